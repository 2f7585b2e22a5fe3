@echo off
rem Test stub for certutil.exe: logs its command line; keeps emulated machine
rem certificate stores under %WINESTUB_STATE%\certstore\STORE\THUMBPRINT.
rem -hashfile answers from hashes.txt ("PATH|spaced hex"), which the test
rem computes from the files on disk; -dump from thumbs.txt ("FILE|spaced hex").
setlocal EnableExtensions DisableDelayedExpansion
call "%~dp0winestub-seq.cmd"
>"%WINESTUB_REC%" echo certutil %*
set "C=%WINESTUB_STATE%\certstore"
if /i "%~1"=="-hashfile" goto :hashfile
if /i "%~1"=="-dump" goto :dump
if /i "%~1"=="-store" goto :store
if /i "%~1"=="-addstore" goto :addstore
if /i "%~1"=="-delstore" goto :delstore
echo CertUtil: Unknown arg: %~1
exit /b 1

:hashfile
set "H="
if exist "%~2" for /f "usebackq tokens=1,* delims=|" %%A in ("%WINESTUB_STATE%\hashes.txt") do if /i "%%A"=="%~2" set "H=%%B"
if not defined H goto :hash_missing
echo SHA256 hash of file %~2:
echo %H%
echo CertUtil: -hashfile command completed successfully.
exit /b 0
:hash_missing
echo CertUtil: -hashfile command FAILED: 0x80070002 (WIN32: 2)
echo CertUtil: The system cannot find the file specified.
exit /b 2

:thumb
rem :thumb FILE - sets T (spaced hex) and TU (no spaces) from thumbs.txt.
set "T="
for %%F in ("%~1") do set "B=%%~nxF"
for /f "usebackq tokens=1,* delims=|" %%A in ("%WINESTUB_STATE%\thumbs.txt") do if /i "%%A"=="%B%" set "T=%%B"
if defined T set "TU=%T: =%"
exit /b 0

:dump
call :thumb "%~2"
if not defined T goto :failed
echo X509 Certificate:
echo Version: 3
echo Serial Number: 01
echo Key Id Hash(rfc-sha1): 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11
echo Key Id Hash(sha1): 22 22 22 22 22 22 22 22 22 22 22 22 22 22 22 22 22 22 22 22
echo Cert Hash(md5): 33 33 33 33 33 33 33 33 33 33 33 33 33 33 33 33
echo Cert Hash(sha1): %T%
echo CertUtil: -dump command completed successfully.
exit /b 0

:store
if not exist "%C%\%~2\%~3" goto :store_missing
echo %~2
echo ================ Certificate 0 ================
echo Cert Hash(sha1): %~3
echo CertUtil: -store command completed successfully.
exit /b 0
:store_missing
echo CertUtil: -store command FAILED: 0x80092004 (-2146885628)
echo CertUtil: Cannot find object or property.
exit /b 1

:addstore
set "ST=%~2"
set "F=%~3"
if /i "%~2"=="-f" set "ST=%~3"
if /i "%~2"=="-f" set "F=%~4"
call :thumb "%F%"
if not defined T goto :failed
if not exist "%C%\%ST%\" mkdir "%C%\%ST%"
>"%C%\%ST%\%TU%" echo %B%
echo %ST%
echo Certificate "%B%" added to store.
echo CertUtil: -addstore command completed successfully.
exit /b 0

:delstore
if not exist "%C%\%~2\%~3" goto :store_missing
del /q "%C%\%~2\%~3"
echo CertUtil: -delstore command completed successfully.
exit /b 0

:failed
echo CertUtil: command FAILED: 0x80070002 (WIN32: 2)
exit /b 2
