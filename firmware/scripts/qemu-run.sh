#!/usr/bin/env bash
# Boots a firmware ELF on QEMU's mps2-an500 (Cortex-M7) and decodes its defmt
# log (semihosting transport) with defmt-print. The exit status is QEMU's:
# the firmware ends with a semihosting exit, 0 for pass, 1 for fail.
# Extra QEMU options (e.g. `-icount shift=0`) come from $QEMU_EXTRA_ARGS;
# UART0 goes to $QEMU_SERIAL (a QEMU chardev, e.g. tcp:127.0.0.1:4444,server=on,wait=off).
set -euo pipefail
elf=${1:?usage: qemu-run.sh FIRMWARE.elf}
shift || true
: "${QEMU_TIMEOUT:=120}"
# A firmware that hangs must not hang the test run: kill QEMU after a timeout.
# shellcheck disable=SC2086
timeout --foreground "$QEMU_TIMEOUT" qemu-system-arm \
  -machine mps2-an500 -cpu cortex-m7 \
  -nographic -monitor none -serial "${QEMU_SERIAL:-null}" \
  -semihosting-config enable=on,target=native \
  ${QEMU_EXTRA_ARGS:-} \
  -kernel "$elf" "$@" \
  | defmt-print -e "$elf"
exit "${PIPESTATUS[0]}"
