#!/bin/sh
# newsmon's entrypoint: export secrets from credential files, then run the command given.
#
#   entrypoint.sh newsmon run
#
# newsmon reads secrets as ${VAR} from its environment (config: `url: "slack://${SLACK_TOKEN}/..."`).
# This script turns credential files into such variables, so secrets never sit in a unit file,
# a compose file or `docker inspect`:
#
#   - systemd: LoadCredential=newsmon:/etc/newsmon/credentials loads each file of that directory
#     as $CREDENTIALS_DIRECTORY/newsmon_<FILE>; LoadCredential=SLACK_TOKEN:/some/file loads one
#     as $CREDENTIALS_DIRECTORY/SLACK_TOKEN;
#   - Docker/compose secrets: /run/secrets/SLACK_TOKEN (used when $CREDENTIALS_DIRECTORY is unset).
#
# Each regular file whose name (less a "newsmon_" prefix) is an upper-case variable name (A-Z,
# 0-9, _; not starting with a digit) becomes that variable, the file's content its value
# (trailing newlines removed). Other files are ignored. A variable already set in the
# environment is left as it is: an explicit setting wins. Values are never evaluated by the shell.
set -eu

dir="${CREDENTIALS_DIRECTORY:-/run/secrets}"
if [ -d "$dir" ]; then
    for file in "$dir"/*; do
        [ -f "$file" ] || continue
        name="${file##*/}"
        name="${name#newsmon_}"
        case "$name" in
            ''|[0-9]*|*[!A-Z0-9_]*) continue ;;
        esac
        eval "already=\${$name+set}"   # $name is checked above: only A-Z, 0-9 and _
        [ -z "$already" ] || continue
        value="$(cat "$file")"
        export "$name=$value"
    done
fi

if [ "$#" -eq 0 ]; then
    set -- newsmon run
fi
exec "$@"
