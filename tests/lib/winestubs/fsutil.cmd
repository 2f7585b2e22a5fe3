@echo off
rem Test stub for fsutil.exe: administrator unless %WINESTUB_STATE%\not-admin exists.
setlocal EnableExtensions DisableDelayedExpansion
call "%~dp0winestub-seq.cmd"
>"%WINESTUB_REC%" echo fsutil %*
if exist "%WINESTUB_STATE%\not-admin" goto :denied
echo Volume - %~3 is NOT Dirty
exit /b 0
:denied
echo The FSUTIL utility requires that you have administrative privileges.
exit /b 1
