@echo off
rem Test stub for bcdedit.exe: logs its command line; keeps testsigning
rem (Yes/No) in %WINESTUB_STATE%\bcd-testsigning.txt. Access is denied when
rem %WINESTUB_STATE%\not-admin exists.
setlocal EnableExtensions DisableDelayedExpansion
>>"%WINESTUB_LOG%" echo bcdedit %*
set "B=%WINESTUB_STATE%\bcd-testsigning.txt"
if exist "%WINESTUB_STATE%\not-admin" goto :denied
if /i "%~1"=="/enum" goto :enum
if /i "%~1"=="/set" if /i "%~2"=="testsigning" goto :set
echo The parameter is incorrect.
exit /b 1
:set
if /i "%~3"=="on" >"%B%" echo Yes
if /i "%~3"=="off" >"%B%" echo No
echo The operation completed successfully.
exit /b 0
:enum
echo.
echo Windows Boot Loader
echo -------------------
echo identifier              {current}
echo device                  partition=C:
echo path                    \Windows\system32\winload.exe
echo description             Windows 7
if exist "%B%" for /f "usebackq" %%V in ("%B%") do echo testsigning             %%V
echo osdevice                partition=C:
exit /b 0
:denied
echo The boot configuration data store could not be opened.
echo Access is denied.
exit /b 1
