@echo off
rem ==========================================================================
rem  Aero Guest Tools $VERSION (build $BUILD_ID, media $LABEL) - setup.cmd
rem
rem  Installs the virtio-win Windows 7 drivers on this media, so that Windows 7
rem  works on Aero's virtio devices, and prepares Windows to boot from a
rem  virtio-blk disk. Run it as Administrator. "setup.cmd /?" lists the
rem  options; README.txt explains every step and every exit code.
rem
rem  It uses only programs that ship with Windows 7 (cmd, pnputil, certutil,
rem  bcdedit, reg, fsutil, wmic); PowerShell is not needed. The read-only
rem  checks it shares with verify.cmd (media files, Windows updates, clock)
rem  are in config\checks.cmd.
rem
rem  Every command that changes the system goes through :run, which logs the
rem  command and its output to %SystemDrive%\AeroGuestTools\install.log, and
rem  which /check turns into a "would run" line. Running setup again is safe:
rem  each step checks what is there, records each item once, and registry
rem  writes overwrite (reg add /f).
rem ==========================================================================
rem Delayed expansion stays off on purpose: with it on, a "!" in the media
rem path (a zip unpacked into "Downloads\new!") would be silently dropped.
rem Loops call subroutines instead of reading variables inside blocks.
setlocal EnableExtensions DisableDelayedExpansion

rem A 32-bit cmd.exe on 64-bit Windows (for example one started by a 32-bit
rem autorun program) sees SysWOW64 as System32: pnputil is missing there and
rem the boot driver would be copied to the wrong folder. Start again in the
rem 64-bit cmd.exe, which 32-bit programs reach as Sysnative.
if defined PROCESSOR_ARCHITEW6432 if not defined AGT_WOW64_RELAUNCHED if exist "%SystemRoot%\Sysnative\cmd.exe" goto :relaunch_64

rem Work from the media root. Every path below is relative to it, which keeps
rem the (user-chosen) folder name out of all command lines; pushd also gives a
rem network share a temporary drive letter.
set "AGT_MEDIA=%~dp0"
pushd "%~dp0"
if not exist "%~nx0" exit /b 14

rem Options: none set yet, whatever the environment holds.
for %%V in ($OPTION_VARIABLES) do set "AGT_OPT_%%V="
set "AGT_BADARG="
set "AGT_RESULT=0"

:parse_args
if "%~1"=="" goto :args_done
set "AGT_ARG=%~1"
shift
if "%AGT_ARG:~0,1%"=="-" set "AGT_ARG=/%AGT_ARG:~1%"
rem The options and their spellings come from SETUP_OPTIONS in aero_media/media/scripts.py.
$OPTION_PARSE
set "AGT_BADARG=%AGT_ARG%"
goto :parse_args

:args_done
if defined AGT_OPT_HELP goto :usage
if not defined AGT_BADARG goto :args_ok
echo ERROR: unknown option "%AGT_BADARG%". Run "setup.cmd /?" for the list of options.
set "AGT_RESULT=2"
goto :finish

:args_ok
rem /force is for unattended installs: no questions (as /quiet), no restart,
rem and test mode is turned on where the signing policy needs it.
if defined AGT_OPT_FORCE set "AGT_OPT_QUIET=1"
if defined AGT_OPT_FORCE set "AGT_OPT_NOREBOOT=1"
rem /testsigning and /notestsigning together: the safer one wins.
if defined AGT_OPT_NOTESTSIGNING set "AGT_OPT_TESTSIGNING="
set "AGT_CHECK="
if defined AGT_OPT_CHECK set "AGT_CHECK=1"

set "AGT_STATE=%SystemDrive%\AeroGuestTools"
set "AGT_LOG=%AGT_STATE%\install.log"
set "AGT_RUN_OUT=%AGT_STATE%\last-command.txt"
rem /check writes nothing, not even the log.
if "%AGT_CHECK%"=="1" set "AGT_LOG=nul"
set /a AGT_WARNINGS=0
set /a AGT_FAILED=0
set "AGT_FIRST_ERROR="
set "AGT_REBOOT="

echo.
echo Aero Guest Tools $VERSION (build $BUILD_ID): Windows 7 virtio driver setup
if "%AGT_CHECK%"=="1" echo /check: reporting only. Nothing on this computer is changed.
echo.

rem ---------------------------------------------------------------------------
rem Architecture. PROCESSOR_ARCHITEW6432 is set only in a 32-bit process on
rem 64-bit Windows and then names the real architecture.
rem ---------------------------------------------------------------------------
set "AGT_ARCH_RAW=%PROCESSOR_ARCHITECTURE%"
if defined PROCESSOR_ARCHITEW6432 set "AGT_ARCH_RAW=%PROCESSOR_ARCHITEW6432%"
set "AGT_ARCH="
if /i "%AGT_ARCH_RAW%"=="x86" set "AGT_ARCH=x86"
if /i "%AGT_ARCH_RAW%"=="AMD64" set "AGT_ARCH=amd64"

rem ---------------------------------------------------------------------------
rem Administrator. "fsutil dirty query" needs administrator rights and, under
rem UAC, an elevated prompt; unlike "net session" it does not depend on the
rem Server service. Only an administrator gets the state folder and the log:
rem /verify-media, which needs no rights, runs first either way.
rem ---------------------------------------------------------------------------
set "AGT_ADMIN=yes"
call fsutil dirty query %SystemDrive% >nul 2>&1
if errorlevel 1 set "AGT_ADMIN=no"
if "%AGT_ADMIN%"=="no" set "AGT_LOG=nul"
if "%AGT_ADMIN%"=="no" goto :log_ready
if "%AGT_CHECK%"=="1" goto :log_ready
if not exist "%AGT_STATE%\" mkdir "%AGT_STATE%"
if exist "%AGT_STATE%\" goto :log_ready
echo ERROR: cannot create the folder %AGT_STATE% for the log and the setup records.
set "AGT_RESULT=15"
goto :finish
:log_ready
>>"%AGT_LOG%" echo.
call :log "==== setup.cmd started %DATE% %TIME% ===="
>>"%AGT_LOG%" echo Media folder: "%AGT_MEDIA%"
>>"%AGT_LOG%" echo Options: %*

rem ---------------------------------------------------------------------------
rem Media integrity (/verify-media): before any file of the media is used.
rem ---------------------------------------------------------------------------
if not defined AGT_OPT_VERIFYMEDIA goto :media_verified
call :verify_media
if "%AGT_MEDIA_BAD%"=="0" goto :media_verified
call :log "ERROR: the media is damaged or was changed: %AGT_MEDIA_BAD% problem(s), listed above."
call :log "       Copy the media again."
set "AGT_RESULT=14"
goto :finish
:media_verified

if "%AGT_ADMIN%"=="yes" goto :admin_ok
if "%AGT_CHECK%"=="1" goto :admin_check_only
echo ERROR: setup.cmd must run as Administrator.
echo Right-click setup.cmd and choose "Run as administrator", or run it from an
echo elevated command prompt.
set "AGT_RESULT=10"
goto :finish
:admin_check_only
call :log "WARNING: not running as Administrator. A real install would stop here with exit code 10,"
call :log "         and some of the state below cannot be read."
set "AGT_FIRST_ERROR=10"
:admin_ok
call :log "Administrator:        %AGT_ADMIN%"
call :log "PROCESSOR_ARCHITECTURE=%PROCESSOR_ARCHITECTURE% PROCESSOR_ARCHITEW6432=%PROCESSOR_ARCHITEW6432%"
if defined PROCESSOR_ARCHITEW6432 call :wow64_warning
if defined AGT_ARCH goto :arch_ok
call :log "ERROR: processor architecture %AGT_ARCH_RAW% is not supported."
call :log "       This media has drivers for x86 and amd64 Windows 7 only."
set "AGT_RESULT=11"
goto :finish
:arch_ok
call :log "Windows architecture: %AGT_ARCH%"

rem ---------------------------------------------------------------------------
rem What this media holds (config\media.cmd) and the device contract
rem (config\devices.cmd): hardware IDs and services.
rem ---------------------------------------------------------------------------
if not exist "config\media.cmd" goto :config_missing
if not exist "config\devices.cmd" goto :config_missing
if not exist "config\checks.cmd" goto :config_missing
call "config\media.cmd"
call "config\devices.cmd"
call :log "Media:                Aero Guest Tools %AGT_VERSION% (build %AGT_BUILD_ID%), label %AGT_LABEL%"
call :log "Device contract:      %AERO_CONTRACT% %AERO_CONTRACT_VERSION%"
rem /forcesigningpolicy: the user overrides what this media says (Aero's
rem setup.cmd does the same with manifest.json's signing_policy). It decides
rem whether the test certificates are added and whether test mode is wanted.
set "AGT_MEDIA_SIGNING_POLICY=%AGT_SIGNING_POLICY%"
if defined AGT_OPT_SIGNINGPOLICY set "AGT_SIGNING_POLICY=%AGT_OPT_SIGNINGPOLICY%"
call :log "Signing policy:       %AGT_SIGNING_POLICY%"
if defined AGT_OPT_SIGNINGPOLICY call :log "  set by /forcesigningpolicy; this media says %AGT_MEDIA_SIGNING_POLICY%"

if "%AGT_ARCH%"=="amd64" goto :select_amd64
set AGT_INFS=%AGT_INFS_X86%
set "AGT_STORAGE_INF=%AGT_STORAGE_INF_X86%"
set "AGT_STORAGE_SYS=%AGT_STORAGE_SYS_X86%"
set "AGT_STORAGE_SYS_NAME=%AGT_STORAGE_SYS_NAME_X86%"
goto :select_done
:select_amd64
set AGT_INFS=%AGT_INFS_AMD64%
set "AGT_STORAGE_INF=%AGT_STORAGE_INF_AMD64%"
set "AGT_STORAGE_SYS=%AGT_STORAGE_SYS_AMD64%"
set "AGT_STORAGE_SYS_NAME=%AGT_STORAGE_SYS_NAME_AMD64%"
:select_done

rem ---------------------------------------------------------------------------
rem Checks. They only read; a real run stops after them, before changing
rem anything, if one fails. /check reports them all.
rem ---------------------------------------------------------------------------
call :log ""
call :log "Checking the media for %AGT_ARCH%:"
set /a AGT_INF_COUNT=0
if not exist "drivers\%AGT_ARCH%\" call :preflight_error 11 "the driver folder drivers\%AGT_ARCH% is missing."
for %%I in (%AGT_INFS%) do call :check_inf "%%~I"
if %AGT_INF_COUNT%==0 call :preflight_error 11 "this media has no driver packages for %AGT_ARCH%."

rem Certificates: publisher pre-trust always; the test certificates under the
rem testsigning policy, or under any policy with /installcerts.
set "AGT_WANT_TEST_CERTS="
if /i "%AGT_SIGNING_POLICY%"=="test" set "AGT_WANT_TEST_CERTS=1"
if defined AGT_OPT_INSTALLCERTS set "AGT_WANT_TEST_CERTS=1"
for %%C in (%AGT_TRUST_CERTS%) do call :check_cert "%%~C"
if defined AGT_WANT_TEST_CERTS for %%C in (%AGT_TEST_CERTS%) do call :check_cert "%%~C"

call :check_storage

rem The updates Windows 7 needs for SHA-2 signatures, the clock signature
rem checks compare with, and the manifest that names this media: read by
rem config\checks.cmd, which verify.cmd uses too.
set "AGT_MANIFEST_SHA=unknown"
call :log ""
call :log "Checking Windows:"
for /f "tokens=1,*" %%A in ('call "config\checks.cmd" hotfixes clock manifest 2^>nul') do call :system_line "%%A" "%%B"
call :installed_media

rem Catalogs signed with SHA-256 only: Windows 7 checks them only with KB3033929.
set "AGT_STORAGE_HAZARD="
if not "%AGT_SHA256_ONLY%"=="1" goto :kb_done
if "%AGT_KB_KB3033929%"=="yes" goto :kb_done
call :warn "the driver catalogs are signed with SHA-256 only, and KB3033929 is not installed."
call :log "         Windows 7 cannot check these signatures without it: Device Manager shows"
call :log "         error 52 and 64-bit Windows does not load the drivers."
call :log "         Install KB3033929 from Microsoft, then run setup.cmd again."
rem A boot-start driver whose signature 64-bit Windows cannot check stops it
rem from booting once the boot disk is on virtio-blk: do not pre-seed it.
if "%AGT_ARCH%"=="amd64" set "AGT_STORAGE_HAZARD=1"
:kb_done

call :read_testsigning
call :log "Test mode:            %AGT_TS_STATE%"
call :log "nointegritychecks:    %AGT_NIC_STATE%"

if not defined AGT_FIRST_ERROR goto :checks_passed
if "%AGT_CHECK%"=="1" goto :checks_passed
call :log "Setup stopped before changing anything (exit code %AGT_FIRST_ERROR%)."
set "AGT_RESULT=%AGT_FIRST_ERROR%"
goto :finish
:checks_passed
call :log ""
if "%AGT_CHECK%"=="1" call :log "What setup would do (nothing is changed in /check mode):"

rem ---------------------------------------------------------------------------
rem Step 1: certificates.
rem ---------------------------------------------------------------------------
call :log "Step 1 of 5: certificates"
set /a AGT_CERT_COUNT=0
for %%C in (%AGT_TRUST_CERTS%) do call :add_cert TrustedPublisher "%%~C"
if defined AGT_WANT_TEST_CERTS for %%C in (%AGT_TEST_CERTS%) do call :add_test_cert "%%~C"
if %AGT_CERT_COUNT%==0 call :log "  none needed for signing policy %AGT_SIGNING_POLICY%."

rem ---------------------------------------------------------------------------
rem Step 2: test mode, and integrity checks with /nointegritychecks. Only
rem test-signed drivers need test mode, and only 64-bit Windows enforces
rem kernel-mode signatures.
rem ---------------------------------------------------------------------------
call :log "Step 2 of 5: test mode"
call :testsigning
call :nointegritychecks

rem ---------------------------------------------------------------------------
rem Step 3: driver packages. The driver store listing before and after is
rem kept as a fallback record of what this run added.
rem ---------------------------------------------------------------------------
call :log "Step 3 of 5: driver packages for %AGT_ARCH%"
if not "%AGT_CHECK%"=="1" call pnputil -e >"%AGT_STATE%\pnputil-enum-before.txt" 2>&1
set /a AGT_PKG_UNPARSED=0
for %%I in (%AGT_INFS%) do call :add_package "%%~I"
if not "%AGT_CHECK%"=="1" call pnputil -e >"%AGT_STATE%\pnputil-enum-after.txt" 2>&1
if %AGT_PKG_UNPARSED% gtr 0 call :record_new_packages

rem ---------------------------------------------------------------------------
rem Step 4: storage pre-seed, so that Windows still boots once the boot disk
rem moves to virtio-blk.
rem ---------------------------------------------------------------------------
call :log "Step 4 of 5: storage pre-seed for %AGT_STORAGE_NAME%"
call :storage

rem ---------------------------------------------------------------------------
rem Step 5: records for uninstall.cmd and verify.cmd.
rem ---------------------------------------------------------------------------
call :log "Step 5 of 5: setup records in %AGT_STATE%"
call :write_state

call :log ""
if "%AGT_CHECK%"=="1" goto :done_check
if %AGT_FAILED% gtr 0 set "AGT_RESULT=15"
call :log "Setup finished: %AGT_FAILED% failed step(s), %AGT_WARNINGS% warning(s). Log: %AGT_LOG%"
if %AGT_FAILED% gtr 0 call :log "Some steps failed (exit code 15); see the ERROR lines above and install.log."
call :offer_reboot
goto :finish

:done_check
if defined AGT_FIRST_ERROR set "AGT_RESULT=%AGT_FIRST_ERROR%"
if defined AGT_FIRST_ERROR call :log "Check finished: a real run would stop at the checks above with exit code %AGT_RESULT%."
if not defined AGT_FIRST_ERROR call :log "Check finished: %AGT_WARNINGS% warning(s). A real run would pass the checks"
if not defined AGT_FIRST_ERROR call :log "and run the steps listed."
goto :finish

:config_missing
echo ERROR: config\media.cmd or config\devices.cmd is missing: this is not a complete Aero Guest Tools media.
set "AGT_RESULT=14"
goto :finish

:finish
popd
exit /b %AGT_RESULT%

:relaunch_64
set "AGT_WOW64_RELAUNCHED=1"
"%SystemRoot%\Sysnative\cmd.exe" /d /c call "%~f0" %*
exit /b %errorlevel%

rem ===========================================================================
rem Subroutines
rem ===========================================================================

:usage
echo Usage: setup.cmd [options]
echo.
echo Installs the Windows 7 virtio drivers on this media. Run as Administrator.
echo.
echo   /check          report what setup would do; change nothing
echo   /verify-media   first check every file against config\files.sha256 and
echo                   manifest.json; needs no administrator rights
echo   /stageonly      add the driver packages to the driver store only;
echo                   do not install them on present devices
echo   /skipstorage    do not prepare Windows to boot from virtio-blk
echo   /installcerts   also add the test certificates under certs\ to Root and
echo                   TrustedPublisher when the signing policy does not need them
echo   /testsigning    turn test mode on without asking, 64-bit Windows only
echo   /notestsigning  never turn test mode on
echo   /nointegritychecks  also turn driver signature checks off (bcdedit
echo                   nointegritychecks), 64-bit Windows only; a last resort
echo   /quiet          ask no questions; answer "no"
echo   /noreboot       do not offer to restart
echo   /force          unattended: /quiet /noreboot, and test mode on where the
echo                   signing policy needs it
echo   /forcesigningpolicy:test, /forcesigningpolicy:production or
echo   /forcesigningpolicy:none
echo                   act as if the media had that signing policy: only test
echo                   adds the test certificates and wants test mode
echo.
echo Also accepted, as Aero's Guest Tools spell them:
$OPTION_ALIASES
echo.
echo Exit codes: 0 success, 2 bad option, 10 not Administrator, 11 driver
echo folder or package missing, 12 certificate missing, 13 storage driver
echo missing or not matching the device contract, 14 media damaged,
echo 15 an install step failed. Warnings (missing SHA-2 updates, a wrong
echo clock, other media than last time) do not change the exit code.
echo README.txt has the details. Log: %SystemDrive%\AeroGuestTools\install.log
set "AGT_RESULT=0"
goto :finish

rem :run COMMAND... - run a command that changes the system, log it and its
rem output, return its exit code. In /check mode only print it.
:run
if "%AGT_CHECK%"=="1" goto :run_check
echo     running: %*
>>"%AGT_LOG%" echo [%TIME%] running: %*
call %* >"%AGT_RUN_OUT%" 2>&1
set "AGT_RC=%errorlevel%"
type "%AGT_RUN_OUT%" >>"%AGT_LOG%"
>>"%AGT_LOG%" echo [%TIME%] exit code %AGT_RC%
exit /b %AGT_RC%
:run_check
echo     would run: %*
exit /b 0

rem Reached only when the restart in the 64-bit cmd.exe was not possible.
:wow64_warning
call :warn "32-bit cmd.exe on 64-bit Windows, and the 64-bit cmd.exe cannot be started:"
call :log "         System32 paths are redirected. Run setup.cmd from a 64-bit command prompt."
exit /b 0

rem :log "TEXT" - show a line and append it to the log. Plain "echo" for
rem text ("echo." would first look for a file named "echo.TEXT").
:log
if "%~1"=="" goto :log_empty
echo %~1
>>"%AGT_LOG%" echo %~1
exit /b 0
:log_empty
echo.
>>"%AGT_LOG%" echo.
exit /b 0

:warn
set /a AGT_WARNINGS+=1
call :log "WARNING: %~1"
exit /b 0

rem :preflight_error CODE "TEXT" - a check failed; the first code is the exit code.
:preflight_error
call :log "ERROR: %~2"
if not defined AGT_FIRST_ERROR set "AGT_FIRST_ERROR=%~1"
exit /b 0

rem :step_failed "TEXT" - a step failed; setup goes on and exits with 15.
:step_failed
set /a AGT_FAILED+=1
call :log "ERROR: %~1"
exit /b 0

rem :ask "QUESTION" - sets AGT_ANSWER to Y or N. /quiet answers N without
rem asking; /check shows the question and assumes Y to list what would run.
:ask
set "AGT_ANSWER=N"
if "%AGT_CHECK%"=="1" goto :ask_check
if defined AGT_OPT_QUIET exit /b 0
set "AGT_REPLY="
set /p "AGT_REPLY=%~1? [y/N] "
if /i "%AGT_REPLY%"=="y" set "AGT_ANSWER=Y"
if /i "%AGT_REPLY%"=="yes" set "AGT_ANSWER=Y"
>>"%AGT_LOG%" echo Question: %~1? Answer: %AGT_ANSWER%
exit /b 0
:ask_check
echo     would ask: %~1? [y/N]
set "AGT_ANSWER=Y"
exit /b 0

rem :record FILE "LINE" - append LINE to a record file in the state folder
rem unless it is there already, so that re-runs do not duplicate records.
:record
if "%AGT_CHECK%"=="1" exit /b 0
call :is_recorded "%~1" "%~2"
if not errorlevel 1 exit /b 0
>>"%AGT_STATE%\%~1" echo %~2
>>"%AGT_LOG%" echo recorded in %~1: %~2
exit /b 0

rem :is_recorded FILE "LINE" - errorlevel 0 when the record file has LINE.
:is_recorded
set "AGT_REC_FOUND="
if exist "%AGT_STATE%\%~1" for /f "usebackq delims=" %%L in ("%AGT_STATE%\%~1") do if /i "%%L"=="%~2" set "AGT_REC_FOUND=1"
if defined AGT_REC_FOUND exit /b 0
exit /b 1

rem ---------------------------------------------------------------------------
rem /verify-media: config\checks.cmd compares every file with
rem config\files.sha256 (size, certutil -hashfile SHA256) and checks that
rem manifest.json lists config\files.sha256; it prints a PROBLEM line for each
rem fault and a RESULT line with the counts.
rem ---------------------------------------------------------------------------
:verify_media
set /a AGT_MEDIA_BAD=0
set "AGT_MEDIA_FILES="
call :log "Verifying the media against config\files.sha256 and manifest.json (size, certutil -hashfile SHA256):"
if exist "config\checks.cmd" for /f "tokens=1,*" %%A in ('call "config\checks.cmd" media 2^>nul') do call :media_line "%%A" "%%B"
if defined AGT_MEDIA_FILES goto :verify_media_done
call :log "  ERROR    config\checks.cmd is missing or did not run, so the media cannot be verified."
set /a AGT_MEDIA_BAD+=1
set "AGT_MEDIA_FILES=0"
:verify_media_done
call :log "  %AGT_MEDIA_FILES% file(s) checked, %AGT_MEDIA_BAD% problem(s)."
exit /b 0

rem Media paths hold no quotes (the build refuses them), so lines pass on.
:media_line
if "%~1"=="PROBLEM" call :log "  %~2"
if not "%~1"=="RESULT" exit /b 0
for /f "tokens=1" %%F in ("%~2") do set "AGT_MEDIA_FILES=%%F"
for /f "tokens=2" %%G in ("%~2") do set /a AGT_MEDIA_BAD+=%%G
exit /b 0

rem ---------------------------------------------------------------------------
rem Checks
rem ---------------------------------------------------------------------------
:check_inf
set /a AGT_INF_COUNT+=1
if exist "%~1" call :log "  driver package       %~1"
if not exist "%~1" call :preflight_error 11 "driver package %~1 is missing from the media."
exit /b 0

:check_cert
if exist "certs\%~1" call :log "  certificate          certs\%~1"
if not exist "certs\%~1" call :preflight_error 12 "certificate certs\%~1 is missing from the media."
exit /b 0

rem The boot-critical device of the contract (virtio-blk): its INF on this
rem media must install the contract's service, and its .sys must be there.
:check_storage
set "AGT_STORAGE_NAME=boot storage"
if defined AGT_OPT_SKIPSTORAGE call :log "  storage pre-seed     skipped (/skipstorage)"
if defined AGT_OPT_SKIPSTORAGE exit /b 0
if defined AGT_STORAGE_DEVICE goto :check_storage_device
call :log "  storage pre-seed     none: the device contract has no boot-critical device"
set "AGT_OPT_SKIPSTORAGE=1"
exit /b 0
:check_storage_device
call set "AGT_STORAGE_NAME=%%%AGT_STORAGE_DEVICE%_NAME%%"
call set "AGT_STORAGE_SVC=%%%AGT_STORAGE_DEVICE%_SERVICE%%"
call set "AGT_STORAGE_CLASS=%%%AGT_STORAGE_DEVICE%_CLASS%%"
call set "AGT_STORAGE_CLASSGUID=%%%AGT_STORAGE_DEVICE%_CLASSGUID%%"
call set AGT_STORAGE_CDD_KEYS=%%%AGT_STORAGE_DEVICE%_CDD_KEYS%%
if defined AGT_STORAGE_INF goto :check_storage_files
call :preflight_error 13 "this media has no %AGT_STORAGE_NAME% driver for %AGT_ARCH%."
call :log "       Windows could not boot from it. setup.cmd /skipstorage installs without it."
exit /b 0
:check_storage_files
if not exist "%AGT_STORAGE_INF%" call :preflight_error 13 "%AGT_STORAGE_NAME% driver %AGT_STORAGE_INF% is missing from the media."
if not exist "%AGT_STORAGE_INF%" exit /b 0
if not exist "%AGT_STORAGE_SYS%" call :preflight_error 13 "%AGT_STORAGE_NAME% driver file %AGT_STORAGE_SYS% is missing from the media."
call :inf_has_service "%AGT_STORAGE_INF%" "%AGT_STORAGE_SVC%"
if errorlevel 1 goto :check_storage_no_service
call :log "  storage driver       %AGT_STORAGE_INF% installs service %AGT_STORAGE_SVC%"
exit /b 0
:check_storage_no_service
call :preflight_error 13 "%AGT_STORAGE_INF% does not install service %AGT_STORAGE_SVC%"
call :log "       (no AddService line for it), so it does not match the device contract."
exit /b 0

rem :inf_has_service "INF" "SERVICE" - errorlevel 0 when the INF has a line
rem "AddService = SERVICE, ...". "type" also reads UTF-16 INF files (with a
rem byte order mark). The INF text only ever sits in FOR variables, which
rem cmd never re-parses, so no character in it can break the script.
:inf_has_service
set "AGT_IHS_FOUND="
for /f "tokens=1,2 delims==,	 " %%A in ('type "%~1" 2^>nul') do if /i "%%A"=="AddService" if /i "%%B"=="%~2" set "AGT_IHS_FOUND=1"
if defined AGT_IHS_FOUND exit /b 0
exit /b 1

rem :system_line KIND "REST" - one line of config\checks.cmd hotfixes clock manifest.
:system_line
if "%~1"=="HOTFIX" for /f "tokens=1,2,*" %%K in ("%~2") do call :hotfix_line %%K %%L "%%M"
if "%~1"=="CLOCK" for /f "tokens=1,2" %%Y in ("%~2") do call :clock_line %%Y %%Z
if "%~1"=="MANIFEST" set "AGT_MANIFEST_SHA=%~2"
exit /b 0

rem :hotfix_line KB yes-or-no "WHAT" - sets AGT_KB_KB3033929 and so on. With SHA-256-only
rem catalogs a missing KB3033929 gets its own warning further on.
:hotfix_line
set "AGT_KB_%~1=%~2"
if "%~2"=="yes" call :log "  update %~1     installed (%~3)"
if "%~2"=="yes" exit /b 0
if /i "%~1"=="KB3033929" if "%AGT_SHA256_ONLY%"=="1" exit /b 0
call :warn "update %~1 is not installed (%~3)."
call :log "         Windows 7 cannot check SHA-2 signatures of drivers and updates without it."
call :log "         Install it from Windows Update or the Microsoft Update Catalog."
exit /b 0

rem :clock_line YEAR ok-or-wrong - driver signatures and certificates are
rem valid for a span of dates: on a wrong clock Windows rejects good ones.
:clock_line
if "%~1"=="unknown" call :log "  system clock         cannot be read (wmic os get LocalDateTime)"
if "%~1"=="unknown" exit /b 0
if "%~2"=="ok" call :log "  system clock         year %~1"
if "%~2"=="ok" exit /b 0
call :warn "the system clock says the year is %~1, which cannot be right."
call :log "         Windows checks signatures and certificates against the clock, and they fail"
call :log "         when it is wrong. Set the date and time, then run setup.cmd again."
exit /b 0

rem :installed_media - installed-media.txt records the media of the last
rem run. Another media (an update, or a changed copy) is fine, but the user
rem should know that the records of both runs are now mixed.
:installed_media
call :log "  this media           manifest.json SHA-256 %AGT_MANIFEST_SHA%"
for %%K in (version build_id manifest_sha256) do set "AGT_IM_%%K="
if not exist "%AGT_STATE%\installed-media.txt" exit /b 0
for /f "usebackq tokens=1,* delims==" %%A in ("%AGT_STATE%\installed-media.txt") do set "AGT_IM_%%A=%%B"
set "AGT_IM_SAME=1"
if not "%AGT_IM_version%"=="%AGT_VERSION%" set "AGT_IM_SAME="
if not "%AGT_IM_build_id%"=="%AGT_BUILD_ID%" set "AGT_IM_SAME="
if "%AGT_MANIFEST_SHA%"=="unknown" goto :installed_media_compared
if "%AGT_IM_manifest_sha256%"=="unknown" goto :installed_media_compared
if /i not "%AGT_IM_manifest_sha256%"=="%AGT_MANIFEST_SHA%" set "AGT_IM_SAME="
:installed_media_compared
if defined AGT_IM_SAME call :log "  installed before     from this media"
if defined AGT_IM_SAME exit /b 0
call :warn "setup.cmd ran here before from other media: Guest Tools %AGT_IM_version% (build %AGT_IM_build_id%),"
call :log "         manifest.json SHA-256 %AGT_IM_manifest_sha256%. This media is Guest Tools %AGT_VERSION%"
call :log "         (build %AGT_BUILD_ID%). What both runs added stays recorded; uninstall.cmd removes it all."
if "%AGT_IM_version% %AGT_IM_build_id%"=="%AGT_VERSION% %AGT_BUILD_ID%" call :log "         Same version and build, other files: one of the two copies was changed."
exit /b 0

rem :read_testsigning - sets AGT_TS_STATE (testsigning) and AGT_NIC_STATE
rem (nointegritychecks) to on, off or unknown (bcdedit needs administrator
rem rights). bcdedit lists "testsigning Yes" only when set. bcdedit
rem translates "Yes" on some display languages; there "on" is not
rem recognised and setup sets the flag again, which is harmless.
:read_testsigning
set "AGT_TS_STATE=unknown"
set "AGT_NIC_STATE=unknown"
for /f "tokens=1,2" %%A in ('bcdedit /enum {current} 2^>nul') do call :testsigning_line "%%A" "%%B"
exit /b 0
:testsigning_line
if /i "%~1"=="identifier" if "%AGT_TS_STATE%"=="unknown" set "AGT_TS_STATE=off"
if /i "%~1"=="identifier" if "%AGT_NIC_STATE%"=="unknown" set "AGT_NIC_STATE=off"
if /i "%~1"=="testsigning" set "AGT_TS_STATE=off"
if /i "%~1"=="testsigning" if /i "%~2"=="Yes" set "AGT_TS_STATE=on"
if /i "%~1"=="nointegritychecks" set "AGT_NIC_STATE=off"
if /i "%~1"=="nointegritychecks" if /i "%~2"=="Yes" set "AGT_NIC_STATE=on"
exit /b 0

rem ---------------------------------------------------------------------------
rem Step 1: certificates
rem ---------------------------------------------------------------------------
:add_test_cert
call :add_cert Root "%~1"
call :add_cert TrustedPublisher "%~1"
exit /b 0

rem :add_cert STORE "FILE" - add certs\FILE to the local machine STORE, and
rem record it for uninstall.cmd unless it was there before setup added it.
:add_cert
set /a AGT_CERT_COUNT+=1
set "AGT_AC_STORE=%~1"
set "AGT_AC_NAME=%~2"
set "AGT_AC_FILE=certs\%~2"
call :cert_thumbprint "%AGT_AC_NAME%"
if "%AGT_THUMB%"=="?" goto :add_cert_add
call certutil -store %AGT_AC_STORE% %AGT_THUMB% >nul 2>&1
if errorlevel 1 goto :add_cert_add
call :is_recorded installed-certs.txt "%AGT_AC_STORE% %AGT_THUMB% %AGT_AC_NAME%"
if errorlevel 1 goto :add_cert_foreign
call :log "  %AGT_AC_FILE% is already in %AGT_AC_STORE% (added by an earlier run)."
exit /b 0
:add_cert_foreign
call :log "  %AGT_AC_FILE% was in %AGT_AC_STORE% before setup; uninstall.cmd will leave it."
exit /b 0
:add_cert_add
call :log "  adding %AGT_AC_FILE% (SHA-1 thumbprint %AGT_THUMB%) to %AGT_AC_STORE%"
call :run certutil -addstore -f %AGT_AC_STORE% "%AGT_AC_FILE%"
if errorlevel 1 goto :add_cert_failed
call :record installed-certs.txt "%AGT_AC_STORE% %AGT_THUMB% %AGT_AC_NAME%"
exit /b 0
:add_cert_failed
call :step_failed "certutil could not add %AGT_AC_FILE% to %AGT_AC_STORE%."
exit /b 1

rem :cert_thumbprint "NAME" - sets AGT_THUMB to the SHA-1 thumbprint of
rem certs\NAME, which is how certutil -store and -delstore name it.
rem config\media.cmd lists the thumbprints, computed when the media was
rem built; without one, the "Cert Hash(sha1)" line of certutil -dump is read
rem (English Windows). "?" when neither works.
:cert_thumbprint
set "AGT_THUMB="
call set "AGT_THUMB=%%AGT_CERT_SHA1_%~1%%"
if defined AGT_THUMB exit /b 0
set "AGT_THUMB_RAW="
for /f "tokens=1,* delims=:" %%A in ('certutil -dump "certs\%~1" 2^>nul') do if /i "%%A"=="Cert Hash(sha1)" set "AGT_THUMB_RAW=%%B"
if defined AGT_THUMB_RAW set "AGT_THUMB_RAW=%AGT_THUMB_RAW: =%"
if defined AGT_THUMB_RAW if not "%AGT_THUMB_RAW:~39,1%"=="" if "%AGT_THUMB_RAW:~40,1%"=="" set "AGT_THUMB=%AGT_THUMB_RAW%"
if defined AGT_THUMB exit /b 0
set "AGT_THUMB=?"
call :warn "cannot tell the SHA-1 thumbprint of certs\%~1. It is added, but"
call :log "         uninstall.cmd cannot remove it; use certmgr.msc for that."
exit /b 0

rem ---------------------------------------------------------------------------
rem Step 2: test mode
rem ---------------------------------------------------------------------------
:testsigning
set "AGT_TS_WANT="
if /i "%AGT_SIGNING_POLICY%"=="test" set "AGT_TS_WANT=1"
if defined AGT_OPT_TESTSIGNING set "AGT_TS_WANT=1"
if defined AGT_OPT_NOTESTSIGNING set "AGT_TS_WANT="
if defined AGT_TS_WANT goto :testsigning_wanted
if defined AGT_OPT_NOTESTSIGNING call :log "  not changed (/notestsigning); test mode is %AGT_TS_STATE%."
if not defined AGT_OPT_NOTESTSIGNING call :log "  not needed for signing policy %AGT_SIGNING_POLICY%; test mode is %AGT_TS_STATE%."
exit /b 0
:testsigning_wanted
if "%AGT_ARCH%"=="x86" call :log "  not needed: 32-bit Windows 7 does not enforce kernel-mode driver signatures."
if "%AGT_ARCH%"=="x86" exit /b 0
if "%AGT_TS_STATE%"=="on" call :log "  test mode is already on."
if "%AGT_TS_STATE%"=="on" exit /b 0
if defined AGT_OPT_TESTSIGNING goto :testsigning_on
if /i "%AGT_SIGNING_POLICY%"=="test" if defined AGT_OPT_FORCE goto :testsigning_on
if not defined AGT_OPT_QUIET goto :testsigning_ask
call :warn "the drivers are test-signed: 64-bit Windows loads them only in test mode."
call :log "         /quiet asks no questions; run setup.cmd /testsigning or /force to turn it on."
exit /b 0
:testsigning_ask
call :log "  The drivers are test-signed. 64-bit Windows loads them only in test mode,"
call :log "  which shows a Test Mode watermark on the desktop."
call :ask "  Turn test mode on now"
if "%AGT_ANSWER%"=="Y" goto :testsigning_on
call :warn "test mode stays off: the test-signed drivers will not load until you run"
call :log "         bcdedit /set testsigning on, and restart."
exit /b 0
:testsigning_on
call :run bcdedit /set testsigning on
if errorlevel 1 goto :testsigning_failed
call :record testsigning-enabled-by-setup.txt "testsigning on"
set "AGT_REBOOT=1"
exit /b 0
:testsigning_failed
call :step_failed "bcdedit could not turn test mode on."
exit /b 1

rem /nointegritychecks: Windows then loads drivers without checking their
rem signatures at all. A last resort, so only on request and never by
rem /force; uninstall.cmd turns it off again if setup.cmd turned it on.
:nointegritychecks
if not defined AGT_OPT_NOINTEGRITYCHECKS exit /b 0
if "%AGT_ARCH%"=="x86" call :log "  /nointegritychecks: not needed, 32-bit Windows 7 does not enforce driver signatures."
if "%AGT_ARCH%"=="x86" exit /b 0
if "%AGT_NIC_STATE%"=="on" call :log "  nointegritychecks is already on."
if "%AGT_NIC_STATE%"=="on" exit /b 0
call :log "  /nointegritychecks: turning driver signature checks off. This weakens Windows'"
call :log "  protection against malicious drivers, and Windows may ignore it; test mode is"
call :log "  the supported way to load test-signed drivers."
call :run bcdedit /set nointegritychecks on
if errorlevel 1 goto :nointegritychecks_failed
call :record nointegritychecks-enabled-by-setup.txt "nointegritychecks on"
set "AGT_REBOOT=1"
exit /b 0
:nointegritychecks_failed
call :step_failed "bcdedit could not set nointegritychecks on."
exit /b 1

rem ---------------------------------------------------------------------------
rem Step 3: driver packages
rem ---------------------------------------------------------------------------
rem :add_package "INF" - first stage the package in the driver store: that
rem works even with no matching device present, and pnputil prints its
rem published name (oemN.inf), which uninstall.cmd needs to remove it. Then
rem install it on the matching devices present now.
:add_package
set "AGT_PKG_INF=%~1"
set "AGT_PKG_OEM="
call :run pnputil -a "%AGT_PKG_INF%"
if errorlevel 1 goto :add_package_failed
if "%AGT_CHECK%"=="1" goto :add_package_install
for /f "usebackq tokens=1,* delims=:" %%A in ("%AGT_RUN_OUT%") do call :published_name_line "%%B"
if defined AGT_PKG_OEM call :record installed-driver-packages.txt "%AGT_PKG_OEM% %AGT_PKG_INF%"
if defined AGT_PKG_OEM goto :add_package_install
set /a AGT_PKG_UNPARSED+=1
call :warn "pnputil printed no published name (oemN.inf) for %AGT_PKG_INF%;"
call :log "         the driver store listings before and after are compared instead."
:add_package_install
if defined AGT_OPT_STAGEONLY exit /b 0
call :run pnputil -i -a "%AGT_PKG_INF%"
if not errorlevel 1 exit /b 0
call :log "  note: pnputil installed it on no device. Usually none is present yet; Windows"
call :log "  uses the staged package when one appears. The details are in install.log."
exit /b 0
:add_package_failed
call :step_failed "pnputil could not add %AGT_PKG_INF% to the driver store."
exit /b 1

rem :published_name_line " VALUE" - pnputil prints "Published name : oem12.inf";
rem accept any "label : oemN.inf" line, whatever the display language.
:published_name_line
set "AGT_PN=%~1"
if not defined AGT_PN exit /b 0
for /f "tokens=*" %%T in ("%AGT_PN%") do set "AGT_PN=%%T"
if /i not "%AGT_PN:~0,3%"=="oem" exit /b 0
if /i not "%AGT_PN:~-4%"==".inf" exit /b 0
set "AGT_PKG_OEM=%AGT_PN%"
exit /b 0

rem Fallback: record each published name that is in the driver store after
rem this run but was not before it.
:record_new_packages
set "AGT_BEFORE= "
for /f "usebackq tokens=1,* delims=:" %%A in ("%AGT_STATE%\pnputil-enum-before.txt") do call :collect_before "%%B"
for /f "usebackq tokens=1,* delims=:" %%A in ("%AGT_STATE%\pnputil-enum-after.txt") do call :new_package_line "%%B"
exit /b 0
:collect_before
set "AGT_PKG_OEM="
call :published_name_line "%~1"
if defined AGT_PKG_OEM set "AGT_BEFORE=%AGT_BEFORE%%AGT_PKG_OEM% "
exit /b 0
:new_package_line
set "AGT_PKG_OEM="
call :published_name_line "%~1"
if not defined AGT_PKG_OEM exit /b 0
call set "AGT_BEFORE_TEST=%%AGT_BEFORE: %AGT_PKG_OEM% =%%"
if not "%AGT_BEFORE_TEST%"=="%AGT_BEFORE%" exit /b 0
call :record installed-driver-packages.txt "%AGT_PKG_OEM% new-in-driver-store"
exit /b 0

rem ---------------------------------------------------------------------------
rem Step 4: storage pre-seed
rem ---------------------------------------------------------------------------
rem When the boot disk moves to virtio-blk, Windows must load the disk
rem driver at boot, before Plug and Play has installed anything for the new
rem controller. So: the driver file is in System32\drivers; its service is a
rem boot-start kernel driver in the "SCSI miniport" group (the values of the
rem INF's AddService section); and the CriticalDeviceDatabase maps each of
rem the controller's PCI IDs to that service and the SCSIAdapter class.
:storage
if defined AGT_OPT_SKIPSTORAGE call :log "  skipped."
if defined AGT_OPT_SKIPSTORAGE exit /b 0
if not defined AGT_STORAGE_HAZARD goto :storage_preseed
call :warn "storage pre-seed skipped: without KB3033929, 64-bit Windows cannot check the"
call :log "         SHA-256 signature of %AGT_STORAGE_SYS_NAME%, and a boot-start driver it cannot check"
call :log "         stops Windows from booting. Install KB3033929 and run setup.cmd again."
exit /b 0
:storage_preseed
set /a AGT_STORAGE_FAILED=0
set "AGT_SVC_KEY=HKLM\SYSTEM\CurrentControlSet\Services\%AGT_STORAGE_SVC%"
set "AGT_CDD_ROOT=HKLM\SYSTEM\CurrentControlSet\Control\CriticalDeviceDatabase"
call :run copy /y "%AGT_STORAGE_SYS%" "%SystemRoot%\System32\drivers\%AGT_STORAGE_SYS_NAME%"
if errorlevel 1 set /a AGT_STORAGE_FAILED+=1
call :reg_set "%AGT_SVC_KEY%" Type REG_DWORD 1
call :reg_set "%AGT_SVC_KEY%" Start REG_DWORD 0
call :reg_set "%AGT_SVC_KEY%" ErrorControl REG_DWORD 1
call :reg_set "%AGT_SVC_KEY%" Group REG_SZ "SCSI miniport"
call :reg_set "%AGT_SVC_KEY%" ImagePath REG_EXPAND_SZ "system32\drivers\%AGT_STORAGE_SYS_NAME%"
rem Parameters as the viostor INF's pnpsafe_pci_addreg section sets them.
call :reg_set "%AGT_SVC_KEY%\Parameters" BusType REG_DWORD 1
call :reg_set "%AGT_SVC_KEY%\Parameters\PnpInterface" 5 REG_DWORD 1
for %%K in (%AGT_STORAGE_CDD_KEYS%) do call :cdd_add "%%~K"
if %AGT_STORAGE_FAILED% gtr 0 call :step_failed "%AGT_STORAGE_FAILED% storage pre-seed command(s) failed."
if %AGT_STORAGE_FAILED% gtr 0 call :log "       Windows may not boot from %AGT_STORAGE_NAME%."
if %AGT_STORAGE_FAILED% gtr 0 exit /b 1
call :record storage-preseed.txt "%AGT_STORAGE_SVC% %AGT_STORAGE_SYS_NAME%"
exit /b 0

:cdd_add
call :reg_set "%AGT_CDD_ROOT%\%~1" Service REG_SZ "%AGT_STORAGE_SVC%"
call :reg_set "%AGT_CDD_ROOT%\%~1" ClassGUID REG_SZ "%AGT_STORAGE_CLASSGUID%"
call :reg_set "%AGT_CDD_ROOT%\%~1" Class REG_SZ "%AGT_STORAGE_CLASS%"
exit /b 0

rem :reg_set "KEY" NAME TYPE "DATA" - reg add with /f, so re-runs overwrite.
:reg_set
call :run reg add "%~1" /v %~2 /t %~3 /d "%~4" /f
if errorlevel 1 set /a AGT_STORAGE_FAILED+=1
exit /b 0

rem ---------------------------------------------------------------------------
rem Step 5: state for uninstall.cmd and verify.cmd
rem ---------------------------------------------------------------------------
:write_state
if "%AGT_CHECK%"=="1" call :log "    would write %AGT_STATE%\setup-state.txt and installed-media.txt"
if "%AGT_CHECK%"=="1" exit /b 0
set "AGT_STATE_FILE=%AGT_STATE%\setup-state.txt"
>"%AGT_STATE_FILE%" echo version=%AGT_VERSION%
>>"%AGT_STATE_FILE%" echo build_id=%AGT_BUILD_ID%
>>"%AGT_STATE_FILE%" echo arch=%AGT_ARCH%
>>"%AGT_STATE_FILE%" echo signing_policy=%AGT_SIGNING_POLICY%
>>"%AGT_STATE_FILE%" echo sha256_only=%AGT_SHA256_ONLY%
>>"%AGT_STATE_FILE%" echo stageonly=%AGT_OPT_STAGEONLY%
>>"%AGT_STATE_FILE%" echo skipstorage=%AGT_OPT_SKIPSTORAGE%%AGT_STORAGE_HAZARD%
>>"%AGT_STATE_FILE%" echo failed_steps=%AGT_FAILED%
>>"%AGT_STATE_FILE%" echo date=%DATE% %TIME%
call :log "  wrote %AGT_STATE_FILE%"
rem The media this run installed from, for the next run and for verify.cmd.
set "AGT_MEDIA_FILE=%AGT_STATE%\installed-media.txt"
>"%AGT_MEDIA_FILE%" echo version=%AGT_VERSION%
>>"%AGT_MEDIA_FILE%" echo build_id=%AGT_BUILD_ID%
>>"%AGT_MEDIA_FILE%" echo label=%AGT_LABEL%
>>"%AGT_MEDIA_FILE%" echo signing_policy=%AGT_MEDIA_SIGNING_POLICY%
>>"%AGT_MEDIA_FILE%" echo manifest_sha256=%AGT_MANIFEST_SHA%
>>"%AGT_MEDIA_FILE%" echo date=%DATE% %TIME%
call :log "  wrote %AGT_MEDIA_FILE%"
exit /b 0

:offer_reboot
if not defined AGT_REBOOT exit /b 0
if defined AGT_OPT_NOREBOOT call :log "Restart Windows to finish: boot settings take effect after a restart."
if defined AGT_OPT_NOREBOOT exit /b 0
call :ask "The boot settings take effect after a restart. Restart now"
if "%AGT_ANSWER%"=="Y" call :run shutdown /r /t 10 /c "Aero Guest Tools: restarting to apply the boot settings"
if not "%AGT_ANSWER%"=="Y" call :log "Restart Windows when convenient to finish."
exit /b 0
