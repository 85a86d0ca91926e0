#!/bin/sh
# The container's command: alexnet serve on all interfaces, with the token the environment
# gives (ALEXNET_SERVE_TOKEN, or the file TOKEN_FILE names), or without one when
# ALEXNET_SERVE_AUTH=off says that a gateway in front checks. Extra arguments are passed on
# (for example --max-batch 64 or --index /models/neighbors).
set -eu
auth=""
if [ -n "${TOKEN_FILE:-}" ]; then
    auth="--token-file ${TOKEN_FILE}"
elif [ "${ALEXNET_SERVE_AUTH:-on}" = "off" ]; then
    auth="--no-auth"
fi
# shellcheck disable=SC2086  # $auth is zero or two words
exec alexnet serve --checkpoint "${CHECKPOINT}" --host 0.0.0.0 --port "${PORT}" \
    --runtime "${RUNTIME}" --precision "${PRECISION}" $auth "$@"
