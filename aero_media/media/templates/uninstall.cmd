@echo off
rem ==========================================================================
rem  Aero Guest Tools $VERSION (build $BUILD_ID, media $LABEL) - uninstall.cmd
rem
rem  Undoes what setup.cmd recorded in %SystemDrive%\AeroGuestTools:
rem    - removes the driver packages it added (pnputil -d oemN.inf),
rem    - removes the certificates it added (certutil -delstore),
rem    - turns test mode off, but only if setup.cmd turned it on,
rem    - turns nointegritychecks off, but only if setup.cmd turned it on,
rem    - with /cleanupstorage: undoes the virtio-blk boot pre-seed.
rem  Items that cannot be removed stay recorded, so a later run can retry.
rem  Only Windows 7's own programs are used; PowerShell is not needed. Every
rem  change goes through :run, which logs it to uninstall.log; /check only
rem  lists what would be done.
rem ==========================================================================
rem Delayed expansion stays off: a "!" in the media path would be dropped.
setlocal EnableExtensions DisableDelayedExpansion

rem 32-bit cmd.exe on 64-bit Windows: restart in the 64-bit one (see setup.cmd).
if defined PROCESSOR_ARCHITEW6432 if not defined AGT_WOW64_RELAUNCHED if exist "%SystemRoot%\Sysnative\cmd.exe" goto :relaunch_64

set "AGT_MEDIA=%~dp0"
pushd "%~dp0"
if not exist "%~nx0" exit /b 14

for %%V in ($OPTION_VARIABLES) do set "AGT_OPT_%%V="
set "AGT_BADARG="
set "AGT_RESULT=0"

:parse_args
if "%~1"=="" goto :args_done
set "AGT_ARG=%~1"
shift
if "%AGT_ARG:~0,1%"=="-" set "AGT_ARG=/%AGT_ARG:~1%"
rem The options and their spellings come from UNINSTALL_OPTIONS in aero_media/media/scripts.py.
$OPTION_PARSE
set "AGT_BADARG=%AGT_ARG%"
goto :parse_args

:args_done
if defined AGT_OPT_HELP goto :usage
if not defined AGT_BADARG goto :args_ok
echo ERROR: unknown option "%AGT_BADARG%". Run "uninstall.cmd /?" for the list of options.
set "AGT_RESULT=2"
goto :finish

:args_ok
if defined AGT_OPT_FORCE set "AGT_OPT_QUIET=1"
if defined AGT_OPT_FORCE set "AGT_OPT_NOREBOOT=1"
if defined AGT_OPT_CLEANUPSTORAGEFORCE set "AGT_OPT_CLEANUPSTORAGE=1"
set "AGT_CHECK="
if defined AGT_OPT_CHECK set "AGT_CHECK=1"
set "AGT_STATE=%SystemDrive%\AeroGuestTools"
set "AGT_LOG=%AGT_STATE%\uninstall.log"
set "AGT_RUN_OUT=%AGT_STATE%\last-command.txt"
if "%AGT_CHECK%"=="1" set "AGT_LOG=nul"
if not exist "%AGT_STATE%\" set "AGT_LOG=nul"
set /a AGT_KEPT=0
set "AGT_REBOOT="

echo.
echo Aero Guest Tools $VERSION (build $BUILD_ID): uninstall
if "%AGT_CHECK%"=="1" echo /check: reporting only. Nothing on this computer is changed.
echo.

rem Administrator: see setup.cmd.
call fsutil dirty query %SystemDrive% >nul 2>&1
if not errorlevel 1 goto :admin_ok
if "%AGT_CHECK%"=="1" goto :admin_check_only
echo ERROR: uninstall.cmd must run as Administrator.
echo Right-click uninstall.cmd and choose "Run as administrator".
set "AGT_RESULT=10"
goto :finish
:admin_check_only
call :log "WARNING: not running as Administrator; a real run would stop with exit code 10."
:admin_ok

>>"%AGT_LOG%" echo.
call :log "==== uninstall.cmd started %DATE% %TIME% ===="
>>"%AGT_LOG%" echo Options: %*
if exist "%AGT_STATE%\" goto :state_ok
call :log "Nothing recorded: %AGT_STATE% does not exist, so setup.cmd has not run on this computer."
:state_ok

rem ---------------------------------------------------------------------------
rem Step 1: driver packages recorded by setup.cmd (oemN.inf names).
rem ---------------------------------------------------------------------------
call :log "Step 1 of 4: driver packages"
set "AGT_RECORD=installed-driver-packages.txt"
call :begin_record
if exist "%AGT_STATE%\%AGT_RECORD%" for /f "usebackq tokens=1,*" %%A in ("%AGT_STATE%\%AGT_RECORD%") do call :remove_package "%%A" "%%B"
call :end_record

rem ---------------------------------------------------------------------------
rem Step 2: certificates recorded by setup.cmd ("STORE THUMBPRINT FILE").
rem Certificates that were in a store before setup ran were never recorded.
rem ---------------------------------------------------------------------------
call :log "Step 2 of 4: certificates"
set "AGT_RECORD=installed-certs.txt"
call :begin_record
if exist "%AGT_STATE%\%AGT_RECORD%" for /f "usebackq tokens=1,2,*" %%A in ("%AGT_STATE%\%AGT_RECORD%") do call :remove_cert "%%A" "%%B" "%%C"
call :end_record

rem ---------------------------------------------------------------------------
rem Step 3: test mode and nointegritychecks, each only if setup.cmd turned
rem it on: a setting the user made before setup ran stays as it is.
rem ---------------------------------------------------------------------------
call :log "Step 3 of 4: test mode and integrity checks"
call :testsigning_off
call :nointegritychecks_off

rem ---------------------------------------------------------------------------
rem Step 4: storage pre-seed (/cleanupstorage).
rem ---------------------------------------------------------------------------
call :log "Step 4 of 4: storage pre-seed"
call :cleanup_storage

call :log ""
if "%AGT_CHECK%"=="1" call :log "Check finished."
if "%AGT_CHECK%"=="1" goto :finish
if "%AGT_RESULT%"=="0" if %AGT_KEPT% gtr 0 set "AGT_RESULT=1"
call :cleanup_state
call :log "Uninstall finished with exit code %AGT_RESULT%: %AGT_KEPT% item(s) could not be removed"
call :log "and stay recorded."
call :offer_reboot
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
echo Usage: uninstall.cmd [options]
echo.
echo Removes what setup.cmd installed and recorded. Run as Administrator.
echo Test mode and nointegritychecks are turned off only if setup.cmd turned them on.
echo.
echo   /check                report what would be removed; change nothing
echo   /cleanupstorage       also undo the virtio-blk boot pre-seed: the storage
echo                         service goes back to demand start and the
echo                         CriticalDeviceDatabase entries are deleted. Refused
echo                         while the storage driver is in use
echo   /cleanupstorageforce  /cleanupstorage even while the storage driver is in
echo                         use. Windows will not boot from virtio-blk afterwards
echo   /quiet                ask no questions
echo   /noreboot             do not offer to restart
echo   /force                /quiet /noreboot
echo.
echo Also accepted, as Aero's Guest Tools spell them:
$OPTION_ALIASES
echo.
echo Exit codes: 0 success, 1 some items could not be removed, 2 bad option,
echo 10 not Administrator, 13 /cleanupstorage refused, 14 config missing.
echo Log: %SystemDrive%\AeroGuestTools\uninstall.log
set "AGT_RESULT=0"
goto :finish

rem :run COMMAND... - see setup.cmd.
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

:ask
set "AGT_ANSWER=N"
if "%AGT_CHECK%"=="1" exit /b 0
if defined AGT_OPT_QUIET exit /b 0
set "AGT_REPLY="
set /p "AGT_REPLY=%~1? [y/N] "
if /i "%AGT_REPLY%"=="y" set "AGT_ANSWER=Y"
if /i "%AGT_REPLY%"=="yes" set "AGT_ANSWER=Y"
>>"%AGT_LOG%" echo Question: %~1? Answer: %AGT_ANSWER%
exit /b 0

rem A record file is rewritten with the lines whose item could not be
rem removed: :begin_record starts the new list, :keep adds a line to it,
rem :end_record replaces the record (or deletes it when nothing is left).
:begin_record
set "AGT_KEEP_FILE=%AGT_STATE%\%AGT_RECORD%.remaining"
if "%AGT_CHECK%"=="1" exit /b 0
if exist "%AGT_KEEP_FILE%" del /q "%AGT_KEEP_FILE%"
exit /b 0

:keep
set /a AGT_KEPT+=1
if "%AGT_CHECK%"=="1" exit /b 0
>>"%AGT_KEEP_FILE%" echo %~1
exit /b 0

:end_record
if "%AGT_CHECK%"=="1" exit /b 0
if not exist "%AGT_STATE%\%AGT_RECORD%" exit /b 0
if exist "%AGT_KEEP_FILE%" goto :end_record_keep
rem Nothing kept: every item was removed.
del /q "%AGT_STATE%\%AGT_RECORD%"
exit /b 0
:end_record_keep
if "%AGT_CHECK%"=="1" exit /b 0
move /y "%AGT_KEEP_FILE%" "%AGT_STATE%\%AGT_RECORD%" >nul
exit /b 0

rem :remove_package "oemN.inf" "SOURCE" - pnputil -d refuses while a device
rem uses the package; then it stays recorded. Remove the device in Device
rem Manager first (or leave the package: it does no harm).
:remove_package
set "AGT_RP_OEM=%~1"
if /i not "%AGT_RP_OEM:~0,3%"=="oem" goto :remove_package_bad
if /i not "%AGT_RP_OEM:~-4%"==".inf" goto :remove_package_bad
call :run pnputil -d %AGT_RP_OEM%
if errorlevel 1 goto :remove_package_failed
call :log "  removed %AGT_RP_OEM% (%~2)"
exit /b 0
:remove_package_failed
call :in_driver_store %AGT_RP_OEM%
if errorlevel 1 goto :remove_package_gone
call :log "  WARNING: could not remove %AGT_RP_OEM% (%~2)."
call :log "  A device probably still uses it. It stays recorded."
call :keep "%~1 %~2"
exit /b 0
:remove_package_gone
call :log "  %AGT_RP_OEM% is no longer in the driver store."
exit /b 0
:remove_package_bad
call :log "  WARNING: ignoring the record line %~1 %~2: not an oemN.inf name."
exit /b 0

rem :in_driver_store oemN.inf - errorlevel 0 when pnputil -e lists it.
:in_driver_store
set "AGT_IDS_FOUND="
for /f "tokens=1,* delims=:" %%A in ('pnputil -e 2^>nul') do call :in_driver_store_line "%%B" "%~1"
if defined AGT_IDS_FOUND exit /b 0
exit /b 1
:in_driver_store_line
set "AGT_IDS_V=%~1"
if not defined AGT_IDS_V exit /b 0
for /f "tokens=*" %%T in ("%AGT_IDS_V%") do set "AGT_IDS_V=%%T"
if /i "%AGT_IDS_V%"=="%~2" set "AGT_IDS_FOUND=1"
exit /b 0

rem :remove_cert "STORE" "THUMBPRINT" "FILE"
:remove_cert
if "%~2"=="?" goto :remove_cert_unknown
call certutil -store %~1 %~2 >nul 2>&1
if errorlevel 1 goto :remove_cert_gone
call :run certutil -delstore %~1 %~2
if errorlevel 1 goto :remove_cert_failed
call :log "  removed %~3 from %~1"
exit /b 0
:remove_cert_gone
call :log "  %~3 is no longer in %~1."
exit /b 0
:remove_cert_failed
call :log "  WARNING: could not remove %~3 from %~1. It stays recorded."
call :keep "%~1 %~2 %~3"
exit /b 0
:remove_cert_unknown
call :log "  WARNING: %~3 in %~1 has no recorded thumbprint; remove it with certmgr.msc."
call :keep "%~1 %~2 %~3"
exit /b 0

:testsigning_off
if exist "%AGT_STATE%\testsigning-enabled-by-setup.txt" goto :testsigning_off_run
call :log "  setup.cmd did not turn test mode on; it stays as it is."
exit /b 0
:testsigning_off_run
call :run bcdedit /set testsigning off
if errorlevel 1 goto :testsigning_off_failed
call :log "  test mode turned off; it takes effect after a restart."
set "AGT_REBOOT=1"
if not "%AGT_CHECK%"=="1" del /q "%AGT_STATE%\testsigning-enabled-by-setup.txt"
exit /b 0
:testsigning_off_failed
call :log "  WARNING: bcdedit could not turn test mode off. It stays recorded."
set /a AGT_KEPT+=1
exit /b 0

:nointegritychecks_off
if exist "%AGT_STATE%\nointegritychecks-enabled-by-setup.txt" goto :nointegritychecks_off_run
call :log "  setup.cmd did not set nointegritychecks; it stays as it is."
exit /b 0
:nointegritychecks_off_run
call :run bcdedit /set nointegritychecks off
if errorlevel 1 goto :nointegritychecks_off_failed
call :log "  nointegritychecks turned off: Windows checks driver signatures again after a restart."
set "AGT_REBOOT=1"
if not "%AGT_CHECK%"=="1" del /q "%AGT_STATE%\nointegritychecks-enabled-by-setup.txt"
exit /b 0
:nointegritychecks_off_failed
call :log "  WARNING: bcdedit could not turn nointegritychecks off. It stays recorded."
set /a AGT_KEPT+=1
exit /b 0

rem The pre-seed lets Windows boot from virtio-blk. It stays unless
rem /cleanupstorage is given, and even then not while the storage driver runs
rem a device (the services' Enum\Count value): if that is the boot disk,
rem Windows would no longer boot.
:cleanup_storage
if defined AGT_OPT_CLEANUPSTORAGE goto :cleanup_storage_config
if exist "%AGT_STATE%\storage-preseed.txt" call :log "  left in place: it keeps a virtio-blk boot disk bootable."
if exist "%AGT_STATE%\storage-preseed.txt" call :log "  uninstall.cmd /cleanupstorage removes it."
if not exist "%AGT_STATE%\storage-preseed.txt" call :log "  nothing recorded."
exit /b 0
:cleanup_storage_config
if not exist "config\media.cmd" goto :cleanup_storage_noconfig
if not exist "config\devices.cmd" goto :cleanup_storage_noconfig
call "config\media.cmd"
call "config\devices.cmd"
if defined AGT_STORAGE_DEVICE goto :cleanup_storage_device
call :log "  the device contract has no boot-critical device; nothing to do."
exit /b 0
:cleanup_storage_noconfig
call :log "ERROR: /cleanupstorage needs config\media.cmd and config\devices.cmd next to uninstall.cmd."
set "AGT_RESULT=14"
exit /b 0
:cleanup_storage_device
call set "AGT_STORAGE_SVC=%%%AGT_STORAGE_DEVICE%_SERVICE%%"
call set AGT_STORAGE_CDD_KEYS=%%%AGT_STORAGE_DEVICE%_CDD_KEYS%%
set "AGT_SVC_KEY=HKLM\SYSTEM\CurrentControlSet\Services\%AGT_STORAGE_SVC%"
set "AGT_CDD_ROOT=HKLM\SYSTEM\CurrentControlSet\Control\CriticalDeviceDatabase"
set "AGT_IN_USE=0"
for /f "tokens=1,2,3" %%A in ('reg query "%AGT_SVC_KEY%\Enum" /v Count 2^>nul') do if /i "%%A"=="Count" set /a AGT_IN_USE=%%C
if "%AGT_IN_USE%"=="0" goto :cleanup_storage_run
if defined AGT_OPT_CLEANUPSTORAGEFORCE goto :cleanup_storage_forced
call :log "  REFUSED: %AGT_STORAGE_SVC% drives %AGT_IN_USE% device(s) right now, perhaps the boot disk."
call :log "  Without the pre-seed Windows might not boot. Use /cleanupstorageforce if you are sure."
set "AGT_RESULT=13"
exit /b 0
:cleanup_storage_forced
call :log "  WARNING: %AGT_STORAGE_SVC% drives %AGT_IN_USE% device(s); removing the pre-seed anyway."
:cleanup_storage_run
call reg query "%AGT_SVC_KEY%" >nul 2>&1
if errorlevel 1 goto :cleanup_storage_cdd
rem Demand start, not deleted: a virtio-blk data disk still needs the service.
call :run reg add "%AGT_SVC_KEY%" /v Start /t REG_DWORD /d "3" /f
if errorlevel 1 set /a AGT_KEPT+=1
:cleanup_storage_cdd
for %%K in (%AGT_STORAGE_CDD_KEYS%) do call :cdd_delete "%%~K"
if "%AGT_CHECK%"=="1" exit /b 0
if exist "%AGT_STATE%\storage-preseed.txt" del /q "%AGT_STATE%\storage-preseed.txt"
call :log "  service %AGT_STORAGE_SVC% set to demand start; CriticalDeviceDatabase entries removed."
exit /b 0

:cdd_delete
call reg query "%AGT_CDD_ROOT%\%~1" >nul 2>&1
if errorlevel 1 exit /b 0
call :run reg delete "%AGT_CDD_ROOT%\%~1" /f
if errorlevel 1 set /a AGT_KEPT+=1
exit /b 0

rem Remove the records that are now empty; keep the logs.
:cleanup_state
if "%AGT_CHECK%"=="1" exit /b 0
if not exist "%AGT_STATE%\" exit /b 0
set "AGT_LEFT="
for %%F in (installed-driver-packages.txt installed-certs.txt testsigning-enabled-by-setup.txt nointegritychecks-enabled-by-setup.txt storage-preseed.txt) do if exist "%AGT_STATE%\%%F" set "AGT_LEFT=1"
if defined AGT_LEFT exit /b 0
for %%F in (setup-state.txt installed-media.txt pnputil-enum-before.txt pnputil-enum-after.txt last-command.txt) do if exist "%AGT_STATE%\%%F" del /q "%AGT_STATE%\%%F"
call :log "  all setup records removed; the logs stay in %AGT_STATE%."
exit /b 0

:offer_reboot
if not defined AGT_REBOOT exit /b 0
if defined AGT_OPT_NOREBOOT call :log "Restart Windows to finish: boot settings take effect after a restart."
if defined AGT_OPT_NOREBOOT exit /b 0
call :ask "The boot settings take effect after a restart. Restart now"
if "%AGT_ANSWER%"=="Y" call :run shutdown /r /t 10 /c "Aero Guest Tools: restarting to apply the boot settings"
if not "%AGT_ANSWER%"=="Y" call :log "Restart Windows when convenient to finish."
exit /b 0
