#!/usr/bin/env bash
# sshguard step 1 (sync): one sshd log line in, one line out.
#   an authentication failure of host H  ->  tag:fail,H
#   anything else                        ->  an empty line (no event)
# The rule is `authentication failure;.*\brhost=(\S+)` written in POSIX ERE
# (bash has no \b or \S); "failures;" does not match because of the ";".
# (.*[^[:alnum:]_])? stands for `.*\b`: rhost= right after "failure;" counts too.
re='authentication failure;(.*[^[:alnum:]_])?rhost=([^[:space:]]+)'
while IFS= read -r line; do
  if [[ $line =~ $re ]]; then
    printf 'tag:fail,%s\n' "${BASH_REMATCH[2]}"
  else
    printf '\n'
  fi
done
