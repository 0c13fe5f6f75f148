# common.sh: helpers the measuring scripts share; sourced, never run.

# Whether nothing listens on TCP port $1. A server left on a port would, with SO_REUSEPORT, take
# a share of the next one's connections unseen.
port_free() { [[ -z $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }

# The first port from $1 up that nothing listens on.
pick_port() { local p=$1; while ! port_free "$p"; do p=$((p + 1)); done; echo "$p"; }

# The median of the numbers on standard input, one per line.
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
