@echo off
rem Test stub for reg.exe: logs its command line; keeps an emulated registry
rem under %WINESTUB_STATE%\reg, one folder per key, one NAME.val file per value
rem holding "TYPE DATA". Handles the forms the Guest Tools scripts use.
setlocal EnableExtensions DisableDelayedExpansion
call "%~dp0winestub-seq.cmd"
>"%WINESTUB_REC%" echo reg %*
set "R=%WINESTUB_STATE%\reg"
set "K=%~2"
if /i "%~1"=="add" goto :add
if /i "%~1"=="delete" goto :delete
if /i "%~1"=="query" goto :query
echo ERROR: Invalid syntax.
exit /b 1

:add
if not exist "%R%\%K%\" mkdir "%R%\%K%"
if /i not "%~3"=="/v" goto :ok
>"%R%\%K%\%~4.val" echo %~6 %~8
:ok
echo The operation completed successfully.
exit /b 0

:delete
if not exist "%R%\%K%\" goto :notfound
rmdir /s /q "%R%\%K%"
goto :ok

:notfound
echo ERROR: The system was unable to find the specified registry key or value.
exit /b 1

:query
if not exist "%R%\%K%\" goto :notfound
if /i "%~3"=="/k" goto :search
if /i "%~3"=="/v" goto :value
echo.
for %%X in ("%K%") do echo %%~X
rem (Wine 8 expands no wildcards in quoted FOR sets: list from inside the folder.)
pushd "%R%\%K%"
for %%F in (*.val) do call :print_value "%%~nF" "%%~fF"
popd
exit /b 0

:value
if not exist "%R%\%K%\%~4.val" goto :notfound
echo.
for %%X in ("%K%") do echo %%~X
call :print_value "%~4" "%R%\%K%\%~4.val"
exit /b 0

:print_value
for /f "usebackq tokens=1,*" %%A in ("%~2") do call :print_line "%~1" "%%A" "%%B"
exit /b 0
:print_line
set "D=%~3"
if /i "%~2"=="REG_DWORD" if /i not "%D:~0,2%"=="0x" set "D=0x%D%"
echo     %~1    %~2    %D%
exit /b 0

rem reg query KEY /k /f PATTERN: subkeys whose name contains PATTERN.
:search
set "PAT=%~5"
set /a N=0
for /f "delims=" %%S in ('dir /b /ad "%R%\%K%" 2^>nul') do call :search_one "%%S"
echo End of search: %N% match(es) found.
exit /b 0
:search_one
set "NAME=%~1"
call set "REST=%%NAME:%PAT%=%%"
if "%REST%"=="%NAME%" exit /b 0
set /a N+=1
for %%X in ("%K%\%~1") do echo %%~X
exit /b 0
