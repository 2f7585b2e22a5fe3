@echo off
rem Test stub for pnputil.exe (Windows 7 syntax): logs its command line; keeps
rem an emulated driver store under %WINESTUB_STATE%\driverstore (one oemN.inf
rem file per package, holding the original INF name) and prints what Windows
rem 7's pnputil prints. A file %WINESTUB_STATE%\in-use\oemN.inf makes -d fail
rem as for a package a device uses; %WINESTUB_STATE%\no-devices makes -i fail.
setlocal EnableExtensions DisableDelayedExpansion
call "%~dp0winestub-seq.cmd"
>"%WINESTUB_REC%" echo pnputil %*
set "S=%WINESTUB_STATE%\driverstore"
if not exist "%S%\" mkdir "%S%"
echo Microsoft PnP Utility
echo.
if /i "%~1"=="-e" goto :enum
if /i "%~1"=="-a" goto :add
if /i "%~1"=="-i" goto :install
if /i "%~1"=="-d" goto :delete
echo Invalid arguments.
exit /b 87

:install
if /i not "%~2"=="-a" exit /b 87
set "INF=%~3"
set "INSTALL=1"
goto :stage
:add
set "INF=%~2"
set "INSTALL="
:stage
if exist "%INF%" goto :stage_ok
echo Processing inf :            %INF%
echo Adding the driver package failed : The system cannot find the file specified.
exit /b 2
:stage_ok
for %%F in ("%INF%") do set "BASE=%%~nxF"
set "OEM="
rem (Wine 8 expands no wildcards in quoted FOR sets: list from inside the folder.)
pushd "%S%"
for %%F in (oem*.inf) do call :match "%%~fF"
popd
if defined OEM goto :published
set /a NUM=10
if exist "%S%\next.txt" for /f "usebackq" %%N in ("%S%\next.txt") do set /a NUM=%%N
set "OEM=oem%NUM%.inf"
set /a NUM+=1
>"%S%\next.txt" echo %NUM%
>"%S%\%OEM%" echo %BASE%
:published
echo Processing inf :            %BASE%
if defined INSTALL if exist "%WINESTUB_STATE%\no-devices" goto :no_device
if defined INSTALL echo Successfully installed the driver on a device on the system.
echo Driver package added successfully.
echo Published name :            %OEM%
echo.
echo Total attempted:              1
echo Number successfully imported: 1
exit /b 0
:no_device
echo Driver package added successfully.
echo Published name :            %OEM%
echo Failed to install the driver on any of the devices on the system : No more data is available.
exit /b 259
:match
for /f "usebackq delims=" %%L in ("%~1") do if /i "%%L"=="%BASE%" set "OEM=%~nx1"
exit /b 0

:enum
pushd "%S%"
for %%F in (oem*.inf) do call :enum_one "%%~nxF"
popd
exit /b 0
:enum_one
echo Published name :            %~1
echo Driver package provider :   Red Hat, Inc.
echo Class :                     stub class
echo Driver version and date :   06/07/2019 61.77.104.17200
echo Signer name :               Red Hat, Inc.
echo.
exit /b 0

:delete
set "OEM=%~2"
if exist "%WINESTUB_STATE%\in-use\%OEM%" goto :delete_in_use
if not exist "%S%\%OEM%" goto :delete_missing
del /q "%S%\%OEM%"
echo Driver package deleted successfully.
exit /b 0
:delete_in_use
echo Deleting the driver package failed : One or more devices are presently installed using the specified INF.
exit /b 1
:delete_missing
echo Deleting the driver package failed : Invalid INF passed as parameter.
exit /b 1
