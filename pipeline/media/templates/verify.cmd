@echo off
rem ==========================================================================
rem  Aero Guest Tools $VERSION (build $BUILD_ID, media $LABEL) - verify.cmd
rem
rem  Reports the state of the drivers, their services and driver signing, and
rem  writes it to %SystemDrive%\AeroGuestTools\report.txt. It changes nothing.
rem  Run it as Administrator for a complete report (bcdedit needs it).
rem  Result: exit code 0 PASS, 1 WARN, 2 FAIL (see README.txt).
rem  Only Windows 7's own programs are used; PowerShell is not needed.
rem ==========================================================================
rem Delayed expansion stays off: a "!" in the media path would be dropped.
setlocal EnableExtensions DisableDelayedExpansion

rem 32-bit cmd.exe on 64-bit Windows: restart in the 64-bit one (see setup.cmd).
if defined PROCESSOR_ARCHITEW6432 if not defined AGT_WOW64_RELAUNCHED if exist "%SystemRoot%\Sysnative\cmd.exe" goto :relaunch_64

pushd "%~dp0"
if not exist "%~nx0" exit /b 14
set "AGT_RESULT=0"
if "%~1"=="" goto :args_ok
if /i "%~1"=="/?" goto :usage
if /i "%~1"=="/h" goto :usage
if /i "%~1"=="/help" goto :usage
echo ERROR: unknown option "%~1". Run "verify.cmd /?" for help.
set "AGT_RESULT=3"
goto :finish

:args_ok
if not exist "config\media.cmd" goto :config_missing
if not exist "config\devices.cmd" goto :config_missing
call "config\media.cmd"
call "config\devices.cmd"

set /a AGT_OK=0
set /a AGT_WARN=0
set /a AGT_FAIL=0
set "AGT_STATE=%SystemDrive%\AeroGuestTools"
set "AGT_REPORT=%AGT_STATE%\report.txt"
if not exist "%AGT_STATE%\" mkdir "%AGT_STATE%" >nul 2>&1
rem Without the rights to write there, the report goes to the user's TEMP.
rem The first line is read back to be sure it was written by this run.
set "AGT_STAMP=Aero Guest Tools verification report, %DATE% %TIME% %RANDOM%"
(>"%AGT_REPORT%" echo %AGT_STAMP%) 2>nul
set "AGT_FIRST="
if exist "%AGT_REPORT%" for /f "usebackq delims=" %%L in ("%AGT_REPORT%") do if not defined AGT_FIRST set "AGT_FIRST=%%L"
if "%AGT_FIRST%"=="%AGT_STAMP%" goto :report_ok
set "AGT_REPORT=%TEMP%\AeroGuestTools-report.txt"
>"%AGT_REPORT%" echo %AGT_STAMP%
:report_ok

set "AGT_ARCH_RAW=%PROCESSOR_ARCHITECTURE%"
if defined PROCESSOR_ARCHITEW6432 set "AGT_ARCH_RAW=%PROCESSOR_ARCHITEW6432%"
set "AGT_ARCH=%AGT_ARCH_RAW%"
if /i "%AGT_ARCH_RAW%"=="x86" set "AGT_ARCH=x86"
if /i "%AGT_ARCH_RAW%"=="AMD64" set "AGT_ARCH=amd64"
set "AGT_ADMIN=yes"
call fsutil dirty query %SystemDrive% >nul 2>&1
if errorlevel 1 set "AGT_ADMIN=no"

call :out "Date:            %DATE% %TIME%"
for /f "delims=" %%V in ('ver') do call :out "Windows:         %%V"
call :out "Architecture:    %AGT_ARCH%"
call :out "Administrator:   %AGT_ADMIN%"
call :out "This media:      Aero Guest Tools %AGT_VERSION% (build %AGT_BUILD_ID%), label %AGT_LABEL%"
call :out "Signing policy:  %AGT_SIGNING_POLICY%"
call :out "Device contract: %AERO_CONTRACT% %AERO_CONTRACT_VERSION%"
if "%AGT_ADMIN%"=="no" call :warn "not running as Administrator: test mode cannot be read."

rem ---------------------------------------------------------------------------
call :out ""
call :out "Setup records (%AGT_STATE%)"
set "AGT_SS_version="
set "AGT_SS_arch="
set "AGT_SS_skipstorage="
set "AGT_SS_date="
if exist "%AGT_STATE%\setup-state.txt" goto :setup_state
call :fail "setup.cmd has not completed on this computer: setup-state.txt is missing. Run setup.cmd."
goto :setup_state_done
:setup_state
for /f "usebackq tokens=1,* delims==" %%A in ("%AGT_STATE%\setup-state.txt") do set "AGT_SS_%%A=%%B"
call :pass "setup.cmd ran on %AGT_SS_date%: Guest Tools %AGT_SS_version%, %AGT_SS_arch%"
if not "%AGT_SS_version%"=="%AGT_VERSION%" call :warn "installed from Guest Tools %AGT_SS_version%; this media is %AGT_VERSION%. Run its setup.cmd."
if /i not "%AGT_SS_arch%"=="%AGT_ARCH%" call :fail "setup.cmd installed %AGT_SS_arch% drivers, but Windows is %AGT_ARCH%."
:setup_state_done

rem ---------------------------------------------------------------------------
call :out ""
call :out "Driver packages (pnputil -e)"
set "AGT_STORE= "
for /f "tokens=1,* delims=:" %%A in ('pnputil -e 2^>nul') do call :store_line "%%B"
set /a AGT_PKG_COUNT=0
if exist "%AGT_STATE%\installed-driver-packages.txt" for /f "usebackq tokens=1,*" %%A in ("%AGT_STATE%\installed-driver-packages.txt") do call :package "%%A" "%%B"
if %AGT_PKG_COUNT%==0 call :warn "no driver packages are recorded as installed by setup.cmd."

rem ---------------------------------------------------------------------------
call :out ""
call :out "Devices and services"
for %%P in (%AERO_DEVICE_PREFIXES%) do call :device %%P

rem ---------------------------------------------------------------------------
call :out ""
call :out "Boot storage"
call :storage

rem ---------------------------------------------------------------------------
call :out ""
call :out "Driver signing"
call :signing

rem ---------------------------------------------------------------------------
call :out ""
if %AGT_FAIL% gtr 0 set "AGT_RESULT=2"
if %AGT_FAIL%==0 if %AGT_WARN% gtr 0 set "AGT_RESULT=1"
set "AGT_VERDICT=PASS"
if "%AGT_RESULT%"=="1" set "AGT_VERDICT=WARN"
if "%AGT_RESULT%"=="2" set "AGT_VERDICT=FAIL"
call :out "RESULT: %AGT_VERDICT% (%AGT_OK% OK, %AGT_WARN% warning(s), %AGT_FAIL% failure(s))"
echo Report written to %AGT_REPORT%

rem Raw tool output for support, in the report file only.
>>"%AGT_REPORT%" echo.
>>"%AGT_REPORT%" echo ==== Details ====
>>"%AGT_REPORT%" echo ---- pnputil -e
call pnputil -e >>"%AGT_REPORT%" 2>&1
>>"%AGT_REPORT%" echo ---- bcdedit /enum {current}
call bcdedit /enum {current} >>"%AGT_REPORT%" 2>&1
for %%P in (%AERO_DEVICE_PREFIXES%) do call :service_details %%P
goto :finish

:config_missing
echo ERROR: config\media.cmd or config\devices.cmd is missing: run verify.cmd from the Aero Guest Tools media.
set "AGT_RESULT=14"
goto :finish

:finish
popd
exit /b %AGT_RESULT%

:relaunch_64
set "AGT_WOW64_RELAUNCHED=1"
"%SystemRoot%\Sysnative\cmd.exe" /d /c call "%~f0" %*
exit /b %errorlevel%

:usage
echo Usage: verify.cmd
echo.
echo Reports driver, service and signing state to %SystemDrive%\AeroGuestTools\report.txt
echo and changes nothing. Exit codes: 0 PASS, 1 WARN, 2 FAIL, 3 bad option,
echo 14 config missing.
set "AGT_RESULT=0"
goto :finish

rem ===========================================================================
rem Subroutines
rem ===========================================================================
rem :out "TEXT" - show a line and append it to the report. Plain "echo" for
rem text ("echo." would first look for a file named "echo.TEXT").
:out
if "%~1"=="" goto :out_empty
echo %~1
>>"%AGT_REPORT%" echo %~1
exit /b 0
:out_empty
echo.
>>"%AGT_REPORT%" echo.
exit /b 0
:pass
set /a AGT_OK+=1
call :out "  OK    %~1"
exit /b 0
:warn
set /a AGT_WARN+=1
call :out "  WARN  %~1"
exit /b 0
:fail
set /a AGT_FAIL+=1
call :out "  FAIL  %~1"
exit /b 0
:info
call :out "  --    %~1"
exit /b 0

rem Published names (oemN.inf) in the driver store, as " oem1.inf oem2.inf ".
:store_line
set "AGT_SL=%~1"
if not defined AGT_SL exit /b 0
for /f "tokens=*" %%T in ("%AGT_SL%") do set "AGT_SL=%%T"
if /i not "%AGT_SL:~0,3%"=="oem" exit /b 0
if /i not "%AGT_SL:~-4%"==".inf" exit /b 0
set "AGT_STORE=%AGT_STORE%%AGT_SL% "
exit /b 0

:package
set /a AGT_PKG_COUNT+=1
call set "AGT_STORE_TEST=%%AGT_STORE: %~1 =%%"
if not "%AGT_STORE_TEST%"=="%AGT_STORE%" call :pass "%~1 is in the driver store (%~2)"
if "%AGT_STORE_TEST%"=="%AGT_STORE%" call :fail "%~1 (%~2) is no longer in the driver store. Run setup.cmd again."
exit /b 0

rem :device PREFIX - service state of one contract device.
:device
call set "AGT_D_NAME=%%%~1_NAME%%"
call set "AGT_D_SVC=%%%~1_SERVICE%%"
call set "AGT_D_VEN_DEV=%%%~1_VEN_DEV%%"
set "AGT_D_KEY=HKLM\SYSTEM\CurrentControlSet\Services\%AGT_D_SVC%"
set "AGT_D_START="
set "AGT_D_COUNT=0"
set "AGT_D_SEEN="
for /f "tokens=1,2,3" %%A in ('reg query "%AGT_D_KEY%" /v Start 2^>nul') do if /i "%%A"=="Start" set /a AGT_D_START=%%C
for /f "tokens=1,2,3" %%A in ('reg query "%AGT_D_KEY%\Enum" /v Count 2^>nul') do if /i "%%A"=="Count" set /a AGT_D_COUNT=%%C
call :device_seen
if not defined AGT_D_START goto :device_no_service
if %AGT_D_COUNT% gtr 0 call :pass "%AGT_D_NAME%: service %AGT_D_SVC% (start type %AGT_D_START%) drives %AGT_D_COUNT% device(s)."
if %AGT_D_COUNT% gtr 0 exit /b 0
if defined AGT_D_SEEN call :warn "%AGT_D_NAME%: device seen before, but %AGT_D_SVC% drives none now. Check Device Manager."
if not defined AGT_D_SEEN call :info "%AGT_D_NAME%: service %AGT_D_SVC% (start type %AGT_D_START%); no device present."
exit /b 0
:device_no_service
if defined AGT_D_SEEN call :warn "%AGT_D_NAME%: device seen, but service %AGT_D_SVC% is not installed. Run setup.cmd."
if not defined AGT_D_SEEN call :info "%AGT_D_NAME%: no such device seen yet; service %AGT_D_SVC% not installed."
exit /b 0
rem Has Windows ever seen such a PCI device (a key under Enum\PCI)? Key
rem names hold no quotes, so they can be passed on.
:device_seen
for /f "delims=" %%K in ('reg query "HKLM\SYSTEM\CurrentControlSet\Enum\PCI" /k /f "%AGT_D_VEN_DEV%" 2^>nul') do call :device_seen_line "%%K"
exit /b 0
:device_seen_line
set "AGT_DS_LINE=%~1"
call set "AGT_DS_TEST=%%AGT_DS_LINE:\%AGT_D_VEN_DEV%=%%"
if not "%AGT_DS_TEST%"=="%AGT_DS_LINE%" set "AGT_D_SEEN=1"
exit /b 0

rem Boot storage: what setup.cmd's pre-seed set up must still be there.
:storage
if defined AGT_STORAGE_DEVICE goto :storage_device
call :info "the device contract has no boot-critical device."
exit /b 0
:storage_device
call set "AGT_S_NAME=%%%AGT_STORAGE_DEVICE%_NAME%%"
call set "AGT_S_SVC=%%%AGT_STORAGE_DEVICE%_SERVICE%%"
call set AGT_S_CDD_KEYS=%%%AGT_STORAGE_DEVICE%_CDD_KEYS%%
set "AGT_S_SYS=%AGT_STORAGE_SYS_NAME_X86%"
if "%AGT_ARCH%"=="amd64" set "AGT_S_SYS=%AGT_STORAGE_SYS_NAME_AMD64%"
if not "%AGT_SS_skipstorage%"=="" call :info "setup.cmd skipped the storage pre-seed; Windows cannot boot from %AGT_S_NAME% yet."
if not "%AGT_SS_skipstorage%"=="" exit /b 0
set "AGT_S_KEY=HKLM\SYSTEM\CurrentControlSet\Services\%AGT_S_SVC%"
set "AGT_S_START="
for /f "tokens=1,2,3" %%A in ('reg query "%AGT_S_KEY%" /v Start 2^>nul') do if /i "%%A"=="Start" set /a AGT_S_START=%%C
if "%AGT_S_START%"=="0" call :pass "service %AGT_S_SVC% starts at boot (start type 0)."
if not "%AGT_S_START%"=="0" call :fail "service %AGT_S_SVC% does not start at boot (start type %AGT_S_START%)."
if not "%AGT_S_START%"=="0" call :out "        Windows cannot boot from %AGT_S_NAME%. Run setup.cmd again."
if not defined AGT_S_SYS exit /b 0
if exist "%SystemRoot%\System32\drivers\%AGT_S_SYS%" call :pass "%SystemRoot%\System32\drivers\%AGT_S_SYS% is present."
if not exist "%SystemRoot%\System32\drivers\%AGT_S_SYS%" call :fail "%SystemRoot%\System32\drivers\%AGT_S_SYS% is missing. Run setup.cmd again."
set /a AGT_S_KEYS=0
set /a AGT_S_BAD=0
for %%K in (%AGT_S_CDD_KEYS%) do call :cdd_check "%%~K"
if %AGT_S_BAD%==0 call :pass "all %AGT_S_KEYS% CriticalDeviceDatabase entries map %AGT_S_NAME% to %AGT_S_SVC%."
if %AGT_S_BAD% gtr 0 call :fail "%AGT_S_BAD% of %AGT_S_KEYS% CriticalDeviceDatabase entries are missing or wrong."
if %AGT_S_BAD% gtr 0 call :out "        Windows cannot boot from %AGT_S_NAME%. Run setup.cmd again."
exit /b 0
:cdd_check
set /a AGT_S_KEYS+=1
set "AGT_S_CDD_SVC="
for /f "tokens=1,2,3" %%A in ('reg query "HKLM\SYSTEM\CurrentControlSet\Control\CriticalDeviceDatabase\%~1" /v Service 2^>nul') do if /i "%%A"=="Service" set "AGT_S_CDD_SVC=%%C"
if /i not "%AGT_S_CDD_SVC%"=="%AGT_S_SVC%" set /a AGT_S_BAD+=1
exit /b 0

:signing
set "AGT_TS_STATE=unknown"
for /f "tokens=1,2" %%A in ('bcdedit /enum {current} 2^>nul') do call :testsigning_line "%%A" "%%B"
set "AGT_TS_NEED="
if /i "%AGT_SIGNING_POLICY%"=="test" if "%AGT_ARCH%"=="amd64" set "AGT_TS_NEED=1"
if not defined AGT_TS_NEED call :info "test mode is %AGT_TS_STATE%; not needed here (%AGT_SIGNING_POLICY%, %AGT_ARCH%)."
if defined AGT_TS_NEED if "%AGT_TS_STATE%"=="on" call :pass "test mode is on, as the test-signed drivers need."
if defined AGT_TS_NEED if "%AGT_TS_STATE%"=="off" call :fail "test mode is off: 64-bit Windows does not load the test-signed drivers."
if defined AGT_TS_NEED if "%AGT_TS_STATE%"=="off" call :out "        Run bcdedit /set testsigning on, and restart."
if defined AGT_TS_NEED if "%AGT_TS_STATE%"=="unknown" call :warn "cannot read test mode (needs Administrator); the test-signed drivers need it on."
if exist "%AGT_STATE%\installed-certs.txt" for /f "usebackq tokens=1,2,*" %%A in ("%AGT_STATE%\installed-certs.txt") do call :cert_check "%%A" "%%B" "%%C"
for %%C in (%AGT_TRUST_CERTS%) do call :trust_check "%%~C"
if not "%AGT_SHA256_ONLY%"=="1" exit /b 0
call :has_kb3033929
if "%AGT_HAS_KB%"=="yes" call :pass "KB3033929 is installed: Windows can check the SHA-256-only driver signatures."
if "%AGT_HAS_KB%"=="yes" exit /b 0
if "%AGT_ARCH%"=="amd64" call :fail "KB3033929 is missing: 64-bit Windows 7 cannot check the SHA-256-only"
if "%AGT_ARCH%"=="amd64" call :out "        driver signatures and does not load the drivers (error 52)."
if not "%AGT_ARCH%"=="amd64" call :warn "KB3033929 is missing: Windows 7 cannot check the SHA-256-only driver signatures."
exit /b 0

:testsigning_line
if /i "%~1"=="identifier" if "%AGT_TS_STATE%"=="unknown" set "AGT_TS_STATE=off"
if /i "%~1"=="testsigning" set "AGT_TS_STATE=off"
if /i "%~1"=="testsigning" if /i "%~2"=="Yes" set "AGT_TS_STATE=on"
exit /b 0

:cert_check
if "%~2"=="?" call :warn "%~3 was added to %~1 without a known thumbprint; check it with certmgr.msc."
if "%~2"=="?" exit /b 0
call certutil -store %~1 %~2 >nul 2>&1
if errorlevel 1 goto :cert_check_missing
call :pass "%~3 is in %~1 (thumbprint %~2)."
exit /b 0
:cert_check_missing
call :warn "%~3 (thumbprint %~2) is no longer in %~1. Run setup.cmd again."
exit /b 0

rem Publisher pre-trust certificates of this media: in TrustedPublisher, Windows
rem installs the drivers without asking "Would you like to install this device software?".
:trust_check
call :cert_thumbprint "%~1"
if "%AGT_THUMB%"=="?" call :warn "cannot tell the thumbprint of certs\%~1."
if "%AGT_THUMB%"=="?" exit /b 0
call certutil -store TrustedPublisher %AGT_THUMB% >nul 2>&1
if errorlevel 1 goto :trust_check_missing
call :pass "publisher certificate certs\%~1 is trusted (TrustedPublisher)."
exit /b 0
:trust_check_missing
call :warn "publisher certificate certs\%~1 is not in TrustedPublisher; driver installs will"
call :out "        ask for confirmation. Run setup.cmd again."
exit /b 0

rem :cert_thumbprint "NAME" - as in setup.cmd.
:cert_thumbprint
set "AGT_THUMB="
call set "AGT_THUMB=%%AGT_CERT_SHA1_%~1%%"
if defined AGT_THUMB exit /b 0
set "AGT_THUMB_RAW="
for /f "tokens=1,* delims=:" %%A in ('certutil -dump "certs\%~1" 2^>nul') do if /i "%%A"=="Cert Hash(sha1)" set "AGT_THUMB_RAW=%%B"
if defined AGT_THUMB_RAW set "AGT_THUMB_RAW=%AGT_THUMB_RAW: =%"
if defined AGT_THUMB_RAW if not "%AGT_THUMB_RAW:~39,1%"=="" if "%AGT_THUMB_RAW:~40,1%"=="" set "AGT_THUMB=%AGT_THUMB_RAW%"
if not defined AGT_THUMB set "AGT_THUMB=?"
exit /b 0

:has_kb3033929
set "AGT_HAS_KB=no"
for /f "delims=" %%L in ('reg query "HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\Packages" /k /f "KB3033929" 2^>nul') do call :kb_line "%%L"
if "%AGT_HAS_KB%"=="yes" exit /b 0
for /f "delims=" %%L in ('wmic qfe get HotFixID 2^>nul') do call :kb_line "%%L"
exit /b 0
rem Package key names and hotfix IDs hold no quotes, so they can be passed on.
:kb_line
set "AGT_KB_LINE=%~1"
if not "%AGT_KB_LINE:KB3033929=%"=="%AGT_KB_LINE%" set "AGT_HAS_KB=yes"
exit /b 0

:service_details
call set "AGT_D_SVC=%%%~1_SERVICE%%"
>>"%AGT_REPORT%" echo ---- sc query %AGT_D_SVC%
call sc query %AGT_D_SVC% >>"%AGT_REPORT%" 2>&1
exit /b 0
