# Shared helpers of the system test scripts (sourced; the script sets WORK first).

# fail MESSAGE: prints it and the tail of every log in $WORK, then exits 1.
fail() {
    echo "FAIL: $*" >&2
    for f in "$WORK"/*.log "$WORK"/*.out "$WORK"/*.err; do
        [[ -f $f ]] && { echo "--- $f"; tail -n 30 "$f"; }
    done
    exit 1
}

# wait_for SECONDS COMMAND...: polls a condition until it holds or the deadline passes.
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}
