@echo off
rem Test stub for shutdown.exe: only logs its command line.
setlocal EnableExtensions DisableDelayedExpansion
call "%~dp0winestub-seq.cmd"
>"%WINESTUB_REC%" echo shutdown %*
exit /b 0
