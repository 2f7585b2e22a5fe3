@echo off
rem ==========================================================================
rem  Aero Guest Tools $VERSION (build $BUILD_ID, media $LABEL) - config\checks.cmd
rem
rem  The read-only checks that setup.cmd and verify.cmd share, so that both
rem  judge the media, the Windows updates and the clock alike. It changes
rem  nothing and writes no file. Run it with one or more check names (it
rem  works from the media root, whatever the current folder); every line it
rem  prints starts with a keyword, and the caller reads them with for /f and
rem  words them for its own log or report:
rem    media     PROBLEM KIND DETAIL for each damaged file, then RESULT FILES PROBLEMS
rem    manifest  MANIFEST and the SHA-256 of manifest.json, or MANIFEST unknown
rem    hotfixes  HOTFIX KB yes-or-no WHAT, for each update in AGT_HOTFIXES
rem    clock     CLOCK YEAR ok-or-wrong, or CLOCK unknown when wmic cannot tell
rem  Exit code 2 for an unknown check name, else 0.
rem ==========================================================================
setlocal EnableExtensions DisableDelayedExpansion
pushd "%~dp0.."

rem Windows 7 checks SHA-2 signatures only with these updates.
set AGT_HOTFIXES=$HOTFIXES
$HOTFIX_TEXTS
rem Signature and certificate checks compare validity dates with the clock:
rem outside these years it is surely wrong.
set "AGT_CLOCK_MIN=$CLOCK_MIN_YEAR"
set "AGT_CLOCK_MAX=$CLOCK_MAX_YEAR"
set "AGT_CHECKS_RC=0"

:next
if "%~1"=="" goto :done
set "AGT_CHECK_NAME=%~1"
shift
if /i "%AGT_CHECK_NAME%"=="media" call :media & goto :next
if /i "%AGT_CHECK_NAME%"=="manifest" call :manifest & goto :next
if /i "%AGT_CHECK_NAME%"=="hotfixes" call :hotfixes & goto :next
if /i "%AGT_CHECK_NAME%"=="clock" call :clock & goto :next
echo ERROR unknown check %AGT_CHECK_NAME%
set "AGT_CHECKS_RC=2"
goto :next
:done
popd
exit /b %AGT_CHECKS_RC%

rem ---------------------------------------------------------------------------
rem media: config\files.sha256 lists SHA256 SIZE PATH for every file on the
rem media but itself and manifest.json; manifest.json lists them all with
rem config\files.sha256, so its own SHA-256 stands for the whole media.
rem ---------------------------------------------------------------------------
:media
set /a AGT_FILES=0
set /a AGT_BAD=0
if exist "config\files.sha256" goto :media_list
echo PROBLEM NOLIST   config\files.sha256 is missing, so the media cannot be verified
echo RESULT 0 1
exit /b 0
:media_list
for /f "usebackq eol=# tokens=1,2,*" %%A in ("config\files.sha256") do call :media_file %%A %%B "%%C"
if %AGT_FILES%==0 echo PROBLEM EMPTY    config\files.sha256 lists no files
if %AGT_FILES%==0 set /a AGT_BAD+=1
call :media_manifest
echo RESULT %AGT_FILES% %AGT_BAD%
exit /b 0

rem :media_file SHA256 SIZE "PATH"
:media_file
set /a AGT_FILES+=1
set "AGT_VF_SHA=%~1"
set "AGT_VF_SIZE=%~2"
set "AGT_VF_PATH=%~3"
if exist "%AGT_VF_PATH%" goto :media_file_size
echo PROBLEM MISSING  %AGT_VF_PATH%
set /a AGT_BAD+=1
exit /b 0
:media_file_size
set "AGT_VF_ACTUAL="
for %%S in ("%AGT_VF_PATH%") do set "AGT_VF_ACTUAL=%%~zS"
if "%AGT_VF_ACTUAL%"=="%AGT_VF_SIZE%" goto :media_file_hash
echo PROBLEM SIZE     %AGT_VF_PATH% has %AGT_VF_ACTUAL% bytes, expected %AGT_VF_SIZE%
set /a AGT_BAD+=1
exit /b 0
:media_file_hash
rem certutil cannot hash an empty file; for those the size says it all.
if "%AGT_VF_SIZE%"=="0" exit /b 0
call :sha256_of "%AGT_VF_PATH%"
if /i "%AGT_SHA%"=="%AGT_VF_SHA%" exit /b 0
if "%AGT_SHA%"=="unknown" goto :media_file_unhashed
echo PROBLEM CHANGED  %AGT_VF_PATH% (SHA-256 differs)
set /a AGT_BAD+=1
exit /b 0
:media_file_unhashed
echo PROBLEM NOHASH   %AGT_VF_PATH% (certutil -hashfile gave no SHA-256)
set /a AGT_BAD+=1
exit /b 0

rem manifest.json must list config\files.sha256 with its SHA-256, so that the
rem two lists belong together. The manifest is written with one key per
rem line; its text only ever sits in FOR variables, which cmd never
rem re-parses, so no character in it can break the script.
:media_manifest
if exist "manifest.json" goto :media_manifest_read
echo PROBLEM MANIFEST manifest.json is missing
set /a AGT_BAD+=1
exit /b 0
:media_manifest_read
call :sha256_of "config\files.sha256"
set "AGT_LISTED="
if not "%AGT_SHA%"=="unknown" for /f "usebackq tokens=1,2 delims=:, " %%A in ("manifest.json") do if /i "%%~A"=="sha256" if /i "%%~B"=="%AGT_SHA%" set "AGT_LISTED=1"
if defined AGT_LISTED exit /b 0
echo PROBLEM MANIFEST manifest.json does not list config\files.sha256 with its SHA-256
set /a AGT_BAD+=1
exit /b 0

rem ---------------------------------------------------------------------------
rem manifest: the SHA-256 of manifest.json names this exact media
rem (setup.cmd records it in installed-media.txt).
rem ---------------------------------------------------------------------------
:manifest
set "AGT_SHA=unknown"
if exist "manifest.json" call :sha256_of "manifest.json"
echo MANIFEST %AGT_SHA%
exit /b 0

rem :sha256_of "PATH" - sets AGT_SHA to the file's SHA-256 in lower-case hex,
rem or to unknown. Windows 7's certutil prints the hash as spaced hex pairs,
rem later versions without spaces: the hash is the one output line that is
rem 64 hex digits once its spaces are removed, whatever the display language.
rem No hash at all is certutil failing (a busy or locked file), not the file
rem changing: it is asked once more.
:sha256_of
set "AGT_SHA=unknown"
for /f "delims=" %%H in ('certutil -hashfile "%~1" SHA256 2^>nul') do call :sha256_line "%%H"
if not "%AGT_SHA%"=="unknown" exit /b 0
for /f "delims=" %%H in ('certutil -hashfile "%~1" SHA256 2^>nul') do call :sha256_line "%%H"
exit /b 0
:sha256_line
set "AGT_SL=%~1"
if not defined AGT_SL exit /b 0
set "AGT_SL=%AGT_SL: =%"
if not defined AGT_SL exit /b 0
if "%AGT_SL:~63,1%"=="" exit /b 0
if not "%AGT_SL:~64,1%"=="" exit /b 0
for /f "delims=0123456789abcdefABCDEF" %%X in ("%AGT_SL%") do exit /b 0
rem Substitution ignores case, so these make the hex lower-case.
set "AGT_SL=%AGT_SL:a=a%"
set "AGT_SL=%AGT_SL:b=b%"
set "AGT_SL=%AGT_SL:c=c%"
set "AGT_SL=%AGT_SL:d=d%"
set "AGT_SL=%AGT_SL:e=e%"
set "AGT_SL=%AGT_SL:f=f%"
set "AGT_SHA=%AGT_SL%"
exit /b 0

rem ---------------------------------------------------------------------------
rem hotfixes: Windows 7 keeps installed updates as Component Based Servicing
rem packages; WMI (wmic qfe) is asked second, once, for what is not there.
rem ---------------------------------------------------------------------------
:hotfixes
for %%K in (%AGT_HOTFIXES%) do set "AGT_HF_%%K=no"
for %%K in (%AGT_HOTFIXES%) do call :hotfix_cbs %%K
set "AGT_HF_MISSING="
for %%K in (%AGT_HOTFIXES%) do call :hotfix_missing %%K
rem wmic pads the HotFixID column with spaces, so the first token is the ID.
if defined AGT_HF_MISSING for /f "tokens=1" %%H in ('wmic qfe get HotFixID 2^>nul') do set "AGT_HF_%%H=yes"
for %%K in (%AGT_HOTFIXES%) do call :hotfix_print %%K
exit /b 0

rem Package key names hold no quotes, so they can be passed on.
:hotfix_cbs
for /f "delims=" %%L in ('reg query "HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\Packages" /k /f "%~1" 2^>nul') do call :hotfix_cbs_line %~1 "%%L"
exit /b 0
:hotfix_cbs_line
set "AGT_HL=%~2"
call set "AGT_HL_TEST=%%AGT_HL:%~1=%%"
if not "%AGT_HL_TEST%"=="%AGT_HL%" set "AGT_HF_%~1=yes"
exit /b 0

:hotfix_missing
call set "AGT_HF_STATE=%%AGT_HF_%~1%%"
if not "%AGT_HF_STATE%"=="yes" set "AGT_HF_MISSING=1"
exit /b 0

:hotfix_print
call set "AGT_HF_STATE=%%AGT_HF_%~1%%"
if not "%AGT_HF_STATE%"=="yes" set "AGT_HF_STATE=no"
call set "AGT_HF_TEXT=%%AGT_HOTFIX_%~1%%"
echo HOTFIX %~1 %AGT_HF_STATE% %AGT_HF_TEXT%
exit /b 0

rem ---------------------------------------------------------------------------
rem clock: the year from WMI, which answers in one format on every display
rem language (LocalDateTime=yyyymmddHHMMSS...), unlike DATE.
rem ---------------------------------------------------------------------------
:clock
set "AGT_LDT="
for /f "tokens=1,* delims==" %%A in ('wmic os get LocalDateTime /value 2^>nul') do if /i "%%A"=="LocalDateTime" set "AGT_LDT=%%B"
if not defined AGT_LDT goto :clock_unknown
set "AGT_YEAR=%AGT_LDT:~0,4%"
if "%AGT_YEAR:~3,1%"=="" goto :clock_unknown
for /f "delims=0123456789" %%X in ("%AGT_YEAR%") do goto :clock_unknown
set "AGT_CLOCK_STATE=ok"
if %AGT_YEAR% lss %AGT_CLOCK_MIN% set "AGT_CLOCK_STATE=wrong"
if %AGT_YEAR% gtr %AGT_CLOCK_MAX% set "AGT_CLOCK_STATE=wrong"
echo CLOCK %AGT_YEAR% %AGT_CLOCK_STATE%
exit /b 0
:clock_unknown
echo CLOCK unknown
exit /b 0
