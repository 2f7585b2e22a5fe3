@echo off
rem Test stub for wmic.exe: "qfe get HotFixID" lists %WINESTUB_STATE%\hotfixes.txt.
setlocal EnableExtensions DisableDelayedExpansion
>>"%WINESTUB_LOG%" echo wmic %*
echo HotFixID
if exist "%WINESTUB_STATE%\hotfixes.txt" type "%WINESTUB_STATE%\hotfixes.txt"
exit /b 0
