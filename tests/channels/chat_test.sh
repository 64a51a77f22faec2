#!/bin/sh
# The chat demo (demos/chat), checked from outside.
#   chat_test.sh transcript HYDRA CLASSPATH
#       ChatMain --bots 3 --rounds 4 ends by itself; its transcript has every bot line, in order
#       per bot, and the room's announcements of joins, leaves and its closing.
#   chat_test.sh tcp HYDRA CLASSPATH
#       a chat with a console fed by a pipe; a second hydra process joins over tcp, speaks, asks
#       /who and quits; nngcat speaks into the room (--push) and listens to it (--sub).
set -u
mode=$1
hydra=$2
classpath=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"; [ -n "${pid_a:-}" ] && kill "$pid_a" 2>/dev/null' EXIT
fail() { echo "chat $mode: FAIL: $*"; for f in "$dir"/*.out; do echo "--- $f"; cat "$f"; done; exit 1; }

# Wait (up to 60 s: sanitizers are slow) for a line in a file.
await() {   # file line
    for i in $(seq 600); do grep -qxF -- "$2" "$1" && return 0; sleep 0.1; done
    return 1
}

case "$mode" in
transcript)
    rounds=4
    "$hydra" run --no-prefix --cp "$classpath" ChatMain --bots 3 --rounds $rounds --port 0 >"$dir/chat.out" 2>"$dir/chat.err.out" \
        || fail "ChatMain exited with status $?"
    for b in bot1 bot2 bot3; do
        grep -qxF "* $b joined" "$dir/chat.out" || fail "no '* $b joined'"
        grep -qxF "* $b left" "$dir/chat.out" || fail "no '* $b left'"
        # The bot's lines, numbered 1..rounds, each once and in order.
        seen=$(grep "^<$b> (" "$dir/chat.out" | sed "s|^<$b> (\([0-9]*\)/$rounds) .*|\1|" | tr '\n' ' ')
        [ "$seen" = "1 2 3 4 " ] || fail "$b said rounds '$seen', expected '1 2 3 4 '"
        # Joined before speaking, spoke before leaving.
        first=$(grep -nxF "* $b joined" "$dir/chat.out" | cut -d: -f1)
        said=$(grep -n "^<$b> (1/" "$dir/chat.out" | cut -d: -f1)
        last=$(grep -n "^<$b> ($rounds/" "$dir/chat.out" | cut -d: -f1)
        gone=$(grep -nxF "* $b left" "$dir/chat.out" | cut -d: -f1)
        [ "$first" -lt "$said" ] && [ "$last" -lt "$gone" ] || fail "$b's lines are out of place"
    done
    [ "$(tail -n 2 "$dir/chat.out" | head -n 1)" = "* the room is closed" ] || fail "the room did not close last"
    tail -n 1 "$dir/chat.out" | grep -q '^transcript: [0-9]* lines$' || fail "no transcript count"
    ;;
tcp)
    port=$((10000 + ($$ % 10000) * 2))   # below the ephemeral ports (32768 and up)
    mkfifo "$dir/in"
    # Line-buffered output (stdbuf): the test reads alice's output while she runs.
    stdbuf -oL "$hydra" run --no-prefix --cp "$classpath" ChatMain --bots 1 --pace 200 --port $port --name alice \
        <"$dir/in" >"$dir/a.out" 2>&1 &
    pid_a=$!
    exec 3>"$dir/in"
    await "$dir/a.out" "* alice joined" || fail "alice did not join"
    # Every step has a time limit (timeout's status 124), so that a hang names itself and shows
    # the outputs instead of running into ctest's limit.
    printf 'hello from bob\n/who\n/quit\n' |
        timeout 60 "$hydra" run --no-prefix --cp "$classpath" ChatMain --join tcp://127.0.0.1:$port --name bob >"$dir/b.out" 2>&1 \
        || fail "the second process exited with status $? (124: still running after 60 s)"
    grep -qxF "* bob joined" "$dir/b.out" || fail "bob did not see himself join"
    grep -qxF "<bob> hello from bob" "$dir/b.out" || fail "bob did not see his line"
    grep -q "^\* here: .*bob" "$dir/b.out" || fail "bob's /who did not list him"
    await "$dir/a.out" "<bob> hello from bob" || fail "alice did not see bob's line"
    await "$dir/a.out" "* bob left" || fail "alice did not see bob leave"
    timeout 20 nngcat --push --dial tcp://127.0.0.1:$port --data "hi from nngcat" || fail "nngcat --push failed with status $?"
    await "$dir/a.out" "<guest> hi from nngcat" || fail "nngcat's line did not reach the room"
    # The room also publishes control lines (~pong NICK while a member, perhaps bot1, is still
    # connecting, one per ping): every line must be one or the other, and chat lines must come.
    # Messages carry no newline: --quoted prints one per line (--ascii would run them together).
    lines=$(timeout 30 nngcat --sub --dial tcp://127.0.0.1:$((port + 1)) --quoted --count 16 --recv-timeout 10) \
        || fail "nngcat --sub failed with status $?"
    lines=$(echo "$lines" | sed 's/^"//; s/"$//')
    echo "$lines" | grep -qv '^<[a-z0-9]*> \|^\* \|^~pong [a-z0-9]*$' && fail "nngcat --sub got '$lines'"
    echo "$lines" | grep -q '^<bot1> \|^\* ' || fail "nngcat --sub got no chat line: '$lines'"
    echo "/quit" >&3
    exec 3>&-
    for i in $(seq 600); do kill -0 "$pid_a" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid_a" 2>/dev/null && fail "the first process was still running 60 s after /quit"
    wait "$pid_a" || fail "the first process exited with status $?"
    pid_a=
    grep -qxF "* alice left" "$dir/a.out" || fail "alice did not leave"
    ;;
*) echo "usage: chat_test.sh transcript|tcp HYDRA CLASSPATH"; exit 2 ;;
esac
echo "chat $mode: PASS"
