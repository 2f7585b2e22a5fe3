@echo off
rem Test stub helper, called by every stub before it logs: takes the next call
rem number N and sets WINESTUB_REC to %WINESTUB_LOG%\N\call.txt, the file the
rem stub writes its command line to. mkdir is atomic (it fails when the folder
rem exists), so two stubs never take the same number, and a stub that starts
rem after another one has logged takes a higher number: the numbers order the
rem calls as they happened, whatever process (a for /f runs its command in a
rem child cmd) made them. One file per call: no two writers share a file
rem offset, as they would appending with ">>" (Wine's cmd seeks to the end,
rem then writes; that is no atomic append). next.txt only says where to start.
rem The caller's errorlevel may be anything (a real .exe ignores it: after a
rem failed "for /f ('reg query ...')" Wine's cmd leaves it at 1), and a
rem successful mkdir leaves it as it was: "(call )" sets it to 0 first, or the
rem loop below would never end. (Wine 8 runs both "&&" and "||" after a
rem successful mkdir, so they cannot test it.)
set /a WINESTUB_SEQ=0
if exist "%WINESTUB_LOG%\next.txt" for /f "usebackq" %%N in ("%WINESTUB_LOG%\next.txt") do set /a WINESTUB_SEQ=%%N
:take
set /a WINESTUB_SEQ+=1
if %WINESTUB_SEQ% gtr 100000 exit /b 1
(call )
mkdir "%WINESTUB_LOG%\%WINESTUB_SEQ%" 2>nul
if errorlevel 1 goto :take
>"%WINESTUB_LOG%\next.txt" echo %WINESTUB_SEQ%
set "WINESTUB_REC=%WINESTUB_LOG%\%WINESTUB_SEQ%\call.txt"
exit /b 0
