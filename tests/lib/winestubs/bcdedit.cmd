@echo off
rem Test stub for bcdedit.exe: logs its command line; keeps testsigning and
rem nointegritychecks (Yes/No) in %WINESTUB_STATE%\bcd-testsigning.txt and
rem bcd-nointegritychecks.txt, each listed by /enum only once set, as bcdedit
rem does. Access is denied when %WINESTUB_STATE%\not-admin exists, and /set
rem only when bcd-locked exists (a BCD store another program holds).
setlocal EnableExtensions DisableDelayedExpansion
call "%~dp0winestub-seq.cmd"
>"%WINESTUB_REC%" echo bcdedit %*
set "T=%WINESTUB_STATE%\bcd-testsigning.txt"
set "N=%WINESTUB_STATE%\bcd-nointegritychecks.txt"
if exist "%WINESTUB_STATE%\not-admin" goto :denied
if exist "%WINESTUB_STATE%\bcd-locked" if /i "%~1"=="/set" goto :denied
if /i "%~1"=="/enum" goto :enum
if /i "%~1"=="/set" if /i "%~2"=="testsigning" set "B=%T%" & goto :set
if /i "%~1"=="/set" if /i "%~2"=="nointegritychecks" set "B=%N%" & goto :set
echo The parameter is incorrect.
exit /b 1
:set
if /i "%~3"=="on" >"%B%" echo Yes
if /i "%~3"=="off" >"%B%" echo No
if /i not "%~3"=="on" if /i not "%~3"=="off" goto :bad_value
echo The operation completed successfully.
exit /b 0
:bad_value
echo The set command specified is not valid.
exit /b 1
:enum
echo.
echo Windows Boot Loader
echo -------------------
echo identifier              {current}
echo device                  partition=C:
echo path                    \Windows\system32\winload.exe
echo description             Windows 7
if exist "%T%" for /f "usebackq" %%V in ("%T%") do echo testsigning             %%V
if exist "%N%" for /f "usebackq" %%V in ("%N%") do echo nointegritychecks       %%V
echo osdevice                partition=C:
exit /b 0
:denied
echo The boot configuration data store could not be opened.
echo Access is denied.
exit /b 1
