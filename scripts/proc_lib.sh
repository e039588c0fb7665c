# Process and port helpers shared by infra.sh and the multi-gateway scripts (sourced).

# port_open PORT: something accepts connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# alive PID: running and not a zombie (servers whose starting script exited are reparented, and a
# zombie can linger for a second or two before it is reaped).
alive() { [[ -n ${1:-} && -e /proc/$1 ]] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# close_fds: closes every descriptor above 2 of this shell. Use it in the subshell that starts a server,
# so that the server does not keep the caller's pipes or fifos open.
close_fds() {
    local fd
    for fd in /proc/$BASHPID/fd/*; do
        fd=${fd##*/}
        ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null
    done
    return 0
}
