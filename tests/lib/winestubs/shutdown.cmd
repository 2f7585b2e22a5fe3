@echo off
rem Test stub for shutdown.exe: only logs its command line.
>>"%WINESTUB_LOG%" echo shutdown %*
exit /b 0
