@echo off
rem ==========================================================================
rem  Aero Guest Tools $VERSION (build $BUILD_ID, media $LABEL) - verify.cmd
rem
rem  Reports the state of the drivers, their services and driver signing, and
rem  checks this media against config\files.sha256 and manifest.json. It
rem  writes %SystemDrive%\AeroGuestTools\report.txt for people and report.json,
rem  with the same findings, for programs. It changes nothing.
rem  Run it as Administrator for a complete report (bcdedit needs it).
rem  Result: exit code 0 PASS, 1 WARN, 2 FAIL (see README.txt).
rem  Only Windows 7's own programs are used; PowerShell is not needed. The
rem  checks it shares with setup.cmd are in config\checks.cmd.
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
if not exist "config\checks.cmd" goto :config_missing
call "config\media.cmd"
call "config\devices.cmd"

set /a AGT_OK=0
set /a AGT_WARN=0
set /a AGT_FAIL=0
set "AGT_J_STATUS="
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
rem report.json goes beside report.txt.
set "AGT_JSON=%AGT_REPORT:~0,-4%.json"

set "AGT_ARCH_RAW=%PROCESSOR_ARCHITECTURE%"
if defined PROCESSOR_ARCHITEW6432 set "AGT_ARCH_RAW=%PROCESSOR_ARCHITEW6432%"
set "AGT_ARCH=%AGT_ARCH_RAW%"
if /i "%AGT_ARCH_RAW%"=="x86" set "AGT_ARCH=x86"
if /i "%AGT_ARCH_RAW%"=="AMD64" set "AGT_ARCH=amd64"
set "AGT_ADMIN=yes"
call fsutil dirty query %SystemDrive% >nul 2>&1
if errorlevel 1 set "AGT_ADMIN=no"
set "AGT_WINVER=unknown"
for /f "delims=" %%V in ('ver') do set "AGT_WINVER=%%V"

call :out "Date:            %DATE% %TIME%"
call :out "Windows:         %AGT_WINVER%"
call :out "Architecture:    %AGT_ARCH%"
call :out "Administrator:   %AGT_ADMIN%"
call :out "This media:      Aero Guest Tools %AGT_VERSION% (build %AGT_BUILD_ID%), label %AGT_LABEL%"
call :out "Signing policy:  %AGT_SIGNING_POLICY%"
call :out "Device contract: %AERO_CONTRACT% %AERO_CONTRACT_VERSION%"

rem report.json: the findings follow as they are made; the totals close it.
set "AGT_J_IN=%AGT_WINVER%"
call :json_escape
set "AGT_J_ADMIN=false"
if "%AGT_ADMIN%"=="yes" set "AGT_J_ADMIN=true"
>"%AGT_JSON%" echo {
>>"%AGT_JSON%" echo   "report": "Aero Guest Tools verify.cmd",
>>"%AGT_JSON%" echo   "schema_version": 1,
>>"%AGT_JSON%" echo   "media": {"version": "%AGT_VERSION%", "build_id": "%AGT_BUILD_ID%", "label": "%AGT_LABEL%", "signing_policy": "%AGT_SIGNING_POLICY%"},
>>"%AGT_JSON%" echo   "contract": {"name": "%AERO_CONTRACT%", "version": "%AERO_CONTRACT_VERSION%"},
>>"%AGT_JSON%" echo   "windows": "%AGT_J_OUT%",
>>"%AGT_JSON%" echo   "architecture": "%AGT_ARCH%",
>>"%AGT_JSON%" echo   "administrator": %AGT_J_ADMIN%,
>>"%AGT_JSON%" echo   "findings": [
if "%AGT_ADMIN%"=="no" call :warn administrator "not running as Administrator: test mode cannot be read."

rem ---------------------------------------------------------------------------
rem One run of config\checks.cmd: the media check is reported here, the
rem updates and the clock under "Driver signing".
rem ---------------------------------------------------------------------------
call :out ""
call :out "This media (config\files.sha256, manifest.json)"
set "AGT_MEDIA_FILES="
set /a AGT_MEDIA_BAD=0
set "AGT_MANIFEST_SHA=unknown"
set "AGT_KB_LIST="
set "AGT_CLOCK_YEAR=unknown"
set "AGT_CLOCK_STATE="
for /f "tokens=1,*" %%A in ('call "config\checks.cmd" media manifest hotfixes clock 2^>nul') do call :checks_line "%%A" "%%B"
if not defined AGT_MEDIA_FILES call :fail media-file "config\checks.cmd did not run, so the media cannot be verified."
if not defined AGT_MEDIA_FILES set /a AGT_MEDIA_BAD+=1
if not defined AGT_MEDIA_FILES set "AGT_MEDIA_FILES=0"
if %AGT_MEDIA_BAD%==0 call :pass media "all %AGT_MEDIA_FILES% files match config\files.sha256, and manifest.json lists it."
if %AGT_MEDIA_BAD%==0 goto :media_done
set "AGT_DETAIL=this media is damaged or was changed: %AGT_MEDIA_BAD% problem(s) above. Copy it again and check the copy with "setup.cmd /verify-media"."
call :finding FAIL media
:media_done
call :info "manifest.json SHA-256: %AGT_MANIFEST_SHA%"

rem ---------------------------------------------------------------------------
call :out ""
call :out "Setup records (%AGT_STATE%)"
set "AGT_SS_version="
set "AGT_SS_arch="
set "AGT_SS_skipstorage="
set "AGT_SS_date="
if exist "%AGT_STATE%\setup-state.txt" goto :setup_state
call :fail setup-state "setup.cmd has not completed on this computer: setup-state.txt is missing. Run setup.cmd."
goto :setup_state_done
:setup_state
for /f "usebackq tokens=1,* delims==" %%A in ("%AGT_STATE%\setup-state.txt") do set "AGT_SS_%%A=%%B"
call :pass setup-state "setup.cmd ran on %AGT_SS_date%: Guest Tools %AGT_SS_version%, %AGT_SS_arch%"
if /i not "%AGT_SS_arch%"=="%AGT_ARCH%" call :fail setup-arch "setup.cmd installed %AGT_SS_arch% drivers, but Windows is %AGT_ARCH%."
call :installed_media
:setup_state_done

rem ---------------------------------------------------------------------------
call :out ""
call :out "Driver packages (pnputil -e)"
set "AGT_STORE= "
for /f "tokens=1,* delims=:" %%A in ('pnputil -e 2^>nul') do call :store_line "%%B"
set /a AGT_PKG_COUNT=0
if exist "%AGT_STATE%\installed-driver-packages.txt" for /f "usebackq tokens=1,*" %%A in ("%AGT_STATE%\installed-driver-packages.txt") do call :package "%%A" "%%B"
if %AGT_PKG_COUNT%==0 call :warn driver-packages "no driver packages are recorded as installed by setup.cmd."

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
call :json_flush ""
set "AGT_J_SHA=null"
if not "%AGT_MANIFEST_SHA%"=="unknown" set "AGT_J_SHA="%AGT_MANIFEST_SHA%""
set "AGT_J_YEAR=null"
if not "%AGT_CLOCK_YEAR%"=="unknown" set "AGT_J_YEAR="%AGT_CLOCK_YEAR%""
>>"%AGT_JSON%" echo   ],
>>"%AGT_JSON%" echo   "manifest_sha256": %AGT_J_SHA%,
>>"%AGT_JSON%" echo   "clock_year": %AGT_J_YEAR%,
>>"%AGT_JSON%" echo   "counts": {"PASS": %AGT_OK%, "WARN": %AGT_WARN%, "FAIL": %AGT_FAIL%},
>>"%AGT_JSON%" echo   "result": "%AGT_VERDICT%",
>>"%AGT_JSON%" echo   "exit_code": %AGT_RESULT%
>>"%AGT_JSON%" echo }
echo Report written to %AGT_REPORT% and %AGT_JSON%

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
echo ERROR: config\media.cmd, config\devices.cmd or config\checks.cmd is missing: run verify.cmd from the Aero Guest Tools media.
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
echo Checks this media and reports driver, service and signing state to
echo %SystemDrive%\AeroGuestTools\report.txt and report.json; changes nothing.
echo Exit codes: 0 PASS, 1 WARN, 2 FAIL, 3 bad option, 14 config missing.
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

rem :pass ID "TEXT", :warn ID "TEXT", :fail ID "TEXT" - one finding each. ID
rem names the check (letters, digits, "-", ":" and "."). A finding whose text
rem holds double quotes sets AGT_DETAIL and calls :finding STATUS ID itself,
rem because such text cannot be passed as an argument.
:pass
set "AGT_DETAIL=%~2"
call :finding PASS %1
exit /b 0
:warn
set "AGT_DETAIL=%~2"
call :finding WARN %1
exit /b 0
:fail
set "AGT_DETAIL=%~2"
call :finding FAIL %1
exit /b 0
:info
call :out "  --    %~1"
exit /b 0

rem :finding STATUS ID - report.txt gets the finding (AGT_DETAIL) at once,
rem report.json when the next one comes or the report ends: by then the
rem continuation lines (:more) are part of it, and whether a comma follows
rem is known.
:finding
call :json_flush ","
set "AGT_J_STATUS=%~1"
set "AGT_J_ID=%~2"
set "AGT_J_DETAIL=%AGT_DETAIL%"
if "%~1"=="PASS" set /a AGT_OK+=1
if "%~1"=="WARN" set /a AGT_WARN+=1
if "%~1"=="FAIL" set /a AGT_FAIL+=1
set "AGT_WORD=%~1"
if "%~1"=="PASS" set "AGT_WORD=OK  "
echo   %AGT_WORD%  %AGT_DETAIL%
>>"%AGT_REPORT%" echo   %AGT_WORD%  %AGT_DETAIL%
exit /b 0

rem :more "TEXT" - a continuation line of the last finding.
:more
call :out "        %~1"
set "AGT_J_DETAIL=%AGT_J_DETAIL% %~1"
exit /b 0

rem :json_flush "SEP" - write the pending finding to report.json, then SEP.
:json_flush
if not defined AGT_J_STATUS exit /b 0
set "AGT_J_IN=%AGT_J_ID%"
call :json_escape
set "AGT_J_KEY=%AGT_J_OUT%"
set "AGT_J_IN=%AGT_J_DETAIL%"
call :json_escape
>>"%AGT_JSON%" echo     {"id": "%AGT_J_KEY%", "status": "%AGT_J_STATUS%", "detail": "%AGT_J_OUT%"}%~1
set "AGT_J_STATUS="
exit /b 0

rem :json_escape - AGT_J_OUT is AGT_J_IN made the inside of a JSON string:
rem backslashes and double quotes escaped. Report text holds no control
rem characters, the only other ones JSON escapes.
:json_escape
set "AGT_J_OUT="
if not defined AGT_J_IN exit /b 0
set "AGT_J_OUT=%AGT_J_IN:\=\\%"
set "AGT_J_OUT=%AGT_J_OUT:"=\"%"
exit /b 0

rem :checks_line KIND "REST" - one line of config\checks.cmd. Media paths
rem hold no quotes (the build refuses them), so lines can be passed on.
:checks_line
if "%~1"=="PROBLEM" call :fail media-file "%~2"
if "%~1"=="RESULT" for /f "tokens=1,2" %%F in ("%~2") do call :media_counts %%F %%G
if "%~1"=="MANIFEST" set "AGT_MANIFEST_SHA=%~2"
if "%~1"=="HOTFIX" for /f "tokens=1,2,*" %%K in ("%~2") do call :hotfix_seen %%K %%L "%%M"
if "%~1"=="CLOCK" for /f "tokens=1,2" %%Y in ("%~2") do call :clock_seen %%Y %%Z
exit /b 0
:media_counts
set "AGT_MEDIA_FILES=%~1"
set /a AGT_MEDIA_BAD=%~2
exit /b 0
:hotfix_seen
set "AGT_KB_LIST=%AGT_KB_LIST% %~1"
set "AGT_KB_%~1=%~2"
set "AGT_KBT_%~1=%~3"
exit /b 0
:clock_seen
set "AGT_CLOCK_YEAR=%~1"
set "AGT_CLOCK_STATE=%~2"
exit /b 0

rem installed-media.txt names the media setup.cmd last installed from; an
rem older setup.cmd wrote only setup-state.txt, whose version is compared.
:installed_media
if exist "%AGT_STATE%\installed-media.txt" goto :installed_media_read
if not "%AGT_SS_version%"=="%AGT_VERSION%" call :warn installed-media "installed from Guest Tools %AGT_SS_version%; this media is %AGT_VERSION%. Run its setup.cmd."
exit /b 0
:installed_media_read
for %%K in (version build_id manifest_sha256) do set "AGT_IM_%%K="
for /f "usebackq tokens=1,* delims==" %%A in ("%AGT_STATE%\installed-media.txt") do set "AGT_IM_%%A=%%B"
set "AGT_IM_SAME=1"
if not "%AGT_IM_version%"=="%AGT_VERSION%" set "AGT_IM_SAME="
if not "%AGT_IM_build_id%"=="%AGT_BUILD_ID%" set "AGT_IM_SAME="
if "%AGT_MANIFEST_SHA%"=="unknown" goto :installed_media_compared
if "%AGT_IM_manifest_sha256%"=="unknown" goto :installed_media_compared
if /i not "%AGT_IM_manifest_sha256%"=="%AGT_MANIFEST_SHA%" set "AGT_IM_SAME="
:installed_media_compared
if defined AGT_IM_SAME call :pass installed-media "setup.cmd installed from this media (Guest Tools %AGT_VERSION%, build %AGT_BUILD_ID%)."
if defined AGT_IM_SAME exit /b 0
call :warn installed-media "setup.cmd installed from other media: Guest Tools %AGT_IM_version% (build %AGT_IM_build_id%),"
call :more "manifest.json SHA-256 %AGT_IM_manifest_sha256%. This media is Guest Tools %AGT_VERSION%"
call :more "(build %AGT_BUILD_ID%): run its setup.cmd to install from it."
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
if not "%AGT_STORE_TEST%"=="%AGT_STORE%" call :pass driver-package:%~1 "%~1 is in the driver store (%~2)"
if "%AGT_STORE_TEST%"=="%AGT_STORE%" call :fail driver-package:%~1 "%~1 (%~2) is no longer in the driver store. Run setup.cmd again."
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
if %AGT_D_COUNT% gtr 0 call :pass device:%AGT_D_NAME% "%AGT_D_NAME%: service %AGT_D_SVC% (start type %AGT_D_START%) drives %AGT_D_COUNT% device(s)."
if %AGT_D_COUNT% gtr 0 exit /b 0
if defined AGT_D_SEEN call :warn device:%AGT_D_NAME% "%AGT_D_NAME%: device seen before, but %AGT_D_SVC% drives none now. Check Device Manager."
if not defined AGT_D_SEEN call :info "%AGT_D_NAME%: service %AGT_D_SVC% (start type %AGT_D_START%); no device present."
exit /b 0
:device_no_service
if defined AGT_D_SEEN call :warn device:%AGT_D_NAME% "%AGT_D_NAME%: device seen, but service %AGT_D_SVC% is not installed. Run setup.cmd."
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
if "%AGT_S_START%"=="0" call :pass storage:service "service %AGT_S_SVC% starts at boot (start type 0)."
if not "%AGT_S_START%"=="0" call :fail storage:service "service %AGT_S_SVC% does not start at boot (start type %AGT_S_START%)."
if not "%AGT_S_START%"=="0" call :more "Windows cannot boot from %AGT_S_NAME%. Run setup.cmd again."
if not defined AGT_S_SYS exit /b 0
if exist "%SystemRoot%\System32\drivers\%AGT_S_SYS%" call :pass storage:file "%SystemRoot%\System32\drivers\%AGT_S_SYS% is present."
if not exist "%SystemRoot%\System32\drivers\%AGT_S_SYS%" call :fail storage:file "%SystemRoot%\System32\drivers\%AGT_S_SYS% is missing. Run setup.cmd again."
set /a AGT_S_KEYS=0
set /a AGT_S_BAD=0
for %%K in (%AGT_S_CDD_KEYS%) do call :cdd_check "%%~K"
if %AGT_S_BAD%==0 call :pass storage:cdd "all %AGT_S_KEYS% CriticalDeviceDatabase entries map %AGT_S_NAME% to %AGT_S_SVC%."
if %AGT_S_BAD% gtr 0 call :fail storage:cdd "%AGT_S_BAD% of %AGT_S_KEYS% CriticalDeviceDatabase entries are missing or wrong."
if %AGT_S_BAD% gtr 0 call :more "Windows cannot boot from %AGT_S_NAME%. Run setup.cmd again."
exit /b 0
:cdd_check
set /a AGT_S_KEYS+=1
set "AGT_S_CDD_SVC="
for /f "tokens=1,2,3" %%A in ('reg query "HKLM\SYSTEM\CurrentControlSet\Control\CriticalDeviceDatabase\%~1" /v Service 2^>nul') do if /i "%%A"=="Service" set "AGT_S_CDD_SVC=%%C"
if /i not "%AGT_S_CDD_SVC%"=="%AGT_S_SVC%" set /a AGT_S_BAD+=1
exit /b 0

:signing
set "AGT_TS_STATE=unknown"
set "AGT_NIC_STATE=unknown"
for /f "tokens=1,2" %%A in ('bcdedit /enum {current} 2^>nul') do call :testsigning_line "%%A" "%%B"
set "AGT_TS_NEED="
if /i "%AGT_SIGNING_POLICY%"=="test" if "%AGT_ARCH%"=="amd64" set "AGT_TS_NEED=1"
if not defined AGT_TS_NEED call :info "test mode is %AGT_TS_STATE%; not needed here (%AGT_SIGNING_POLICY%, %AGT_ARCH%)."
if defined AGT_TS_NEED if "%AGT_TS_STATE%"=="on" call :pass test-mode "test mode is on, as the test-signed drivers need."
if defined AGT_TS_NEED if "%AGT_TS_STATE%"=="off" call :test_mode_off
if defined AGT_TS_NEED if "%AGT_TS_STATE%"=="unknown" call :warn test-mode "cannot read test mode (needs Administrator); the test-signed drivers need it on."
call :nointegritychecks
if exist "%AGT_STATE%\installed-certs.txt" for /f "usebackq tokens=1,2,*" %%A in ("%AGT_STATE%\installed-certs.txt") do call :cert_check "%%A" "%%B" "%%C"
for %%C in (%AGT_TRUST_CERTS%) do call :trust_check "%%~C"
if not defined AGT_KB_LIST call :warn hotfixes "config\checks.cmd did not report which Windows updates are installed."
for %%K in (%AGT_KB_LIST%) do call :hotfix %%K
call :clock
exit /b 0

:testsigning_line
if /i "%~1"=="identifier" if "%AGT_TS_STATE%"=="unknown" set "AGT_TS_STATE=off"
if /i "%~1"=="identifier" if "%AGT_NIC_STATE%"=="unknown" set "AGT_NIC_STATE=off"
if /i "%~1"=="testsigning" set "AGT_TS_STATE=off"
if /i "%~1"=="testsigning" if /i "%~2"=="Yes" set "AGT_TS_STATE=on"
if /i "%~1"=="nointegritychecks" set "AGT_NIC_STATE=off"
if /i "%~1"=="nointegritychecks" if /i "%~2"=="Yes" set "AGT_NIC_STATE=on"
exit /b 0

:test_mode_off
set "AGT_DETAIL=test mode is off: 64-bit Windows does not load the test-signed drivers. Run "bcdedit /set testsigning on", and restart."
call :finding FAIL test-mode
exit /b 0

rem nointegritychecks on: Windows loads drivers whose signature it does not
rem check, whoever asked for it. It works, but needs attention.
:nointegritychecks
if "%AGT_NIC_STATE%"=="off" call :info "nointegritychecks is off: Windows checks driver signatures."
if not "%AGT_NIC_STATE%"=="on" exit /b 0
set "AGT_DETAIL=nointegritychecks is on: Windows loads drivers without checking their signatures. Turn it off with "bcdedit /set nointegritychecks off" once the drivers are signed."
call :finding WARN integrity-checks
if exist "%AGT_STATE%\nointegritychecks-enabled-by-setup.txt" call :more "setup.cmd /nointegritychecks turned it on; uninstall.cmd turns it off."
exit /b 0

:cert_check
if "%~2"=="?" call :warn certificate:%~1 "%~3 was added to %~1 without a known thumbprint; check it with certmgr.msc."
if "%~2"=="?" exit /b 0
call certutil -store %~1 %~2 >nul 2>&1
if errorlevel 1 goto :cert_check_missing
call :pass certificate:%~1:%~2 "%~3 is in %~1 (thumbprint %~2)."
exit /b 0
:cert_check_missing
call :warn certificate:%~1:%~2 "%~3 (thumbprint %~2) is no longer in %~1. Run setup.cmd again."
exit /b 0

rem Publisher pre-trust certificates of this media: in TrustedPublisher, Windows
rem installs the drivers without asking "Would you like to install this device software?".
:trust_check
call :cert_thumbprint "%~1"
if "%AGT_THUMB%"=="?" call :warn publisher-certificate:%~1 "cannot tell the thumbprint of certs\%~1."
if "%AGT_THUMB%"=="?" exit /b 0
call certutil -store TrustedPublisher %AGT_THUMB% >nul 2>&1
if errorlevel 1 goto :trust_check_missing
call :pass publisher-certificate:%~1 "publisher certificate certs\%~1 is trusted (TrustedPublisher)."
exit /b 0
:trust_check_missing
call :warn publisher-certificate:%~1 "publisher certificate certs\%~1 is not in TrustedPublisher; driver installs will"
call :more "ask for confirmation. Run setup.cmd again."
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

rem :hotfix KB - one of the updates Windows 7 needs for SHA-2 signatures.
rem Without KB3033929, 64-bit Windows does not load SHA-256-only drivers.
:hotfix
call set "AGT_KB_STATE=%%AGT_KB_%~1%%"
call set "AGT_KB_TEXT=%%AGT_KBT_%~1%%"
if "%AGT_KB_STATE%"=="yes" call :pass hotfix:%~1 "update %~1 is installed (%AGT_KB_TEXT%)."
if "%AGT_KB_STATE%"=="yes" exit /b 0
if /i not "%~1"=="KB3033929" goto :hotfix_warn
if not "%AGT_SHA256_ONLY%"=="1" goto :hotfix_warn
if "%AGT_ARCH%"=="amd64" call :fail hotfix:%~1 "KB3033929 is missing: 64-bit Windows 7 cannot check the SHA-256-only"
if "%AGT_ARCH%"=="amd64" call :more "driver signatures and does not load the drivers (error 52)."
if not "%AGT_ARCH%"=="amd64" call :warn hotfix:%~1 "KB3033929 is missing: Windows 7 cannot check the SHA-256-only driver signatures."
exit /b 0
:hotfix_warn
call :warn hotfix:%~1 "update %~1 is not installed (%AGT_KB_TEXT%): Windows 7 cannot check"
call :more "SHA-2 signatures of drivers and updates without it."
exit /b 0

rem Signatures and certificates are valid for a span of dates: on a wrong
rem clock Windows rejects good ones.
:clock
if "%AGT_CLOCK_YEAR%"=="unknown" call :info "cannot read the system clock (wmic os get LocalDateTime)."
if "%AGT_CLOCK_YEAR%"=="unknown" exit /b 0
if "%AGT_CLOCK_STATE%"=="ok" call :pass clock "the system clock says %AGT_CLOCK_YEAR%, which is plausible."
if "%AGT_CLOCK_STATE%"=="ok" exit /b 0
set "AGT_DETAIL=the system clock says %AGT_CLOCK_YEAR%, which cannot be right: signature checks fail on a wrong clock. Set it in "Date and Time"."
call :finding WARN clock
exit /b 0

:service_details
call set "AGT_D_SVC=%%%~1_SERVICE%%"
>>"%AGT_REPORT%" echo ---- sc query %AGT_D_SVC%
call sc query %AGT_D_SVC% >>"%AGT_REPORT%" 2>&1
exit /b 0
