@rem ==========================================================================
@rem config\devices.cmd - the Aero Windows 7 virtio device contract
@rem ($CONTRACT $CONTRACT_VERSION), as setup.cmd, uninstall.cmd and verify.cmd use it.
@rem Generated from $CONTRACT_FILE by aero-virtio-media; do not edit by hand
@rem (setup.cmd /verify-media checks it against config\files.sha256).
@rem
@rem Per device, with P its prefix (for example AERO_VIRTIO_BLK):
@rem   P_NAME          contract device name
@rem   P_VEN_DEV       VEN_xxxx and DEV_yyyy as Enum\PCI key names start
@rem   P_SERVICE       Windows service the driver installs
@rem   P_SYS           the driver binary the service runs (System32\drivers)
@rem   P_INF           INF name in the contract
@rem   P_CLASS         setup class, P_CLASSGUID its GUID
@rem   P_HWIDS         the contract hardware IDs, most specific first, each quoted
@rem   P_BOOT_CRITICAL 1 when Windows must be able to boot from the device
@rem   P_CDD_KEYS      CriticalDeviceDatabase key names (boot-critical devices only)
@rem Values hold no percent, exclamation or caret signs and no unquoted
@rem ampersand, pipe or angle bracket, so they are safe to expand.
@rem ==========================================================================
@rem The contract in force, in the header lines Aero's validate_config.py reads:
rem Contract name: $HEADER_NAME
rem Contract schema_version: $HEADER_SCHEMA_VERSION
rem Contract version: $HEADER_VERSION
set "AERO_CONTRACT=$CONTRACT"
set "AERO_CONTRACT_VERSION=$CONTRACT_VERSION"
set "AERO_DEVICE_PREFIXES=$DEVICE_PREFIXES"

$DEVICE_ENTRIES
