@echo off
rem Test stub for sc.exe: "sc query SERVICE" from the emulated registry.
setlocal EnableExtensions DisableDelayedExpansion
call "%~dp0winestub-seq.cmd"
>"%WINESTUB_REC%" echo sc %*
if not exist "%WINESTUB_STATE%\reg\HKLM\SYSTEM\CurrentControlSet\Services\%~2\" goto :missing
echo.
echo SERVICE_NAME: %~2
echo         TYPE               : 1  KERNEL_DRIVER
echo         STATE              : 1  STOPPED
exit /b 0
:missing
echo [SC] EnumQueryServicesStatus:OpenService FAILED 1060:
echo.
echo The specified service does not exist as an installed service.
exit /b 1060
