# A copy of every calendar mail to imipd; the mail itself is delivered as usual.
# Install as the global "before" script (see 90-imipd.conf) and compile it:
#   sievec /etc/dovecot/sieve/imipd.sieve
require ["vnd.dovecot.pipe", "copy", "envelope", "variables", "mime"];

if header :mime :anychild :contains "Content-Type" ["text/calendar", "application/ics"] {
  if envelope :matches "to" "*" { set "rcpt" "${1}"; }
  pipe :copy "imipd-deliver" ["${rcpt}"];
}
