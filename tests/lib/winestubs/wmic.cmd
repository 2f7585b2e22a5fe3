@echo off
rem Test stub for wmic.exe: logs its command line. "qfe get HotFixID" lists
rem %WINESTUB_STATE%\hotfixes.txt (one ID a line, padded with spaces as wmic
rem pads its column); "os get LocalDateTime /value" answers from clock.txt
rem (yyyymmddHHMMSS.ffffff+zzz). Anything else fails.
setlocal EnableExtensions DisableDelayedExpansion
call "%~dp0winestub-seq.cmd"
>"%WINESTUB_REC%" echo wmic %*
if /i "%~1"=="qfe" if /i "%~2"=="get" if /i "%~3"=="HotFixID" goto :qfe
if /i "%~1"=="os" if /i "%~2"=="get" if /i "%~3"=="LocalDateTime" if /i "%~4"=="/value" goto :clock
echo %~1 - Alias not found.
exit /b 1
:qfe
echo HotFixID
if exist "%WINESTUB_STATE%\hotfixes.txt" type "%WINESTUB_STATE%\hotfixes.txt"
exit /b 0
:clock
set "V=20240115120000.000000+000"
if exist "%WINESTUB_STATE%\clock.txt" for /f "usebackq" %%V in ("%WINESTUB_STATE%\clock.txt") do set "V=%%V"
echo.
echo.
echo LocalDateTime=%V%
echo.
echo.
exit /b 0
