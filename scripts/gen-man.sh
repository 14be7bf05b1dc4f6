#!/usr/bin/env bash
# Writes the man pages from the programs' own --help texts, so a page can
# never say something the program does not (the build runs this after
# linking; tests/cli/test_install.sh checks that every command has a page and
# that each page's text is its command's --help, byte for byte).
#
#   scripts/gen-man.sh BIN_DIR OUT_DIR VERSION
#
# BIN_DIR holds enroll, enroll-device and enrolld. Pages: enroll(1), one
# enroll-NOUN(1) per noun `enroll --help` lists (enroll-admin(1) holds every
# admin noun; enroll-device(1) is both `enroll device` and the enroll-device
# binary), and enrolld(8). The nouns are read from `enroll --help`: a new
# command gets its page without touching this script.
set -euo pipefail
bin=${1:?usage: gen-man.sh BIN_DIR OUT_DIR VERSION}
out=${2:?usage: gen-man.sh BIN_DIR OUT_DIR VERSION}
version=${3:?usage: gen-man.sh BIN_DIR OUT_DIR VERSION}
mkdir -p "$out/man1" "$out/man8"

# roff for a help text shown as it is: no filling, backslashes and hyphens
# escaped (an unescaped '-' renders as a typographic hyphen, and an option
# copied from the page would then not work), no line read as a request.
verbatim() {
  printf '.nf\n'
  sed -e 's/\\/\\e/g' -e 's/-/\\-/g' -e "s/^\([.']\)/\\\\\&\1/"
  printf '.fi\n'
}
# PAGE SECTION SUMMARY: the page's head (NAME is what apropos and whatis show).
head_of() {
  local upper
  upper=$(printf '%s' "$1" | tr '[:lower:]' '[:upper:]')
  printf '.TH %s %s "" "enroll %s" "enroll manual"\n' "$upper" "$2" "$version"
  printf '.SH NAME\n%s \\- %s\n' "$(printf '%s' "$1" | sed 's/-/\\-/g')" "$(printf '%s' "$3" | sed 's/-/\\-/g')"
}
# Text after the name column of the `enroll --help` lines of one noun, joined.
summary_of() {
  "$bin/enroll" --help | sed -n "s/^  $1\( [a-z]*\)\{0,1\}  *\([^ ].*\)$/\2/p" | paste -sd ';' | sed 's/;/; /g'
}
see_also() {
  printf '.SH SEE ALSO\n'
  printf '%s\n' "$@" | sed 's/-/\\-/g; s/\(.*\)(\([18]\))$/.BR \1 (\2)/' | sed '$!s/$/ ,/'
}
EXIT_CODES='.SH EXIT STATUS
The rule of every command is in the help text above and in
.BR enroll (1).'

nouns=$("$bin/enroll" --help | sed -n 's/^  \([a-z][a-z]*\)\( [a-z]*\)\{0,1\}  .*/\1/p' | awk '!seen[$0]++')
pages=()
{
  head_of enroll 1 "zero-touch X.509 identity for IoT fleets: keys, CSRs, CAs, the provisioning service's store, devices"
  printf '.SH SYNOPSIS\n.B enroll\n.I NOUN VERB\n[options]\n.SH DESCRIPTION\n'
  "$bin/enroll" --help | verbatim
  see_also $(for n in $nouns; do printf 'enroll-%s(1) ' "$n"; done) 'enrolld(8)'
} > "$out/man1/enroll.1"
pages+=(man1/enroll.1)

for n in $nouns; do
  page=enroll-$n
  {
    if [ "$n" = device ]; then
      head_of "$page" 1 "the device side: $(summary_of device)"
      printf '.SH SYNOPSIS\n.B enroll device\n.I VERB\n[options]\n.br\n.B enroll\\-device\n.I [device] VERB\n[options]\n'
      printf '.SH DESCRIPTION\n'
      "$bin/enroll" device --help | verbatim
      printf '.SH THE ENROLL\\-DEVICE BINARY\n'
      "$bin/enroll-device" --help | verbatim
    else
      head_of "$page" 1 "$(summary_of "$n")"
      printf '.SH SYNOPSIS\n.B enroll %s\n[options]\n.SH DESCRIPTION\n' "$n"
      "$bin/enroll" "$n" --help | verbatim
    fi
    if [ "$n" = admin ]; then
      # Each admin noun's own help, in the order `enroll admin --help` lists them.
      for a in $("$bin/enroll" admin --help | sed -n 's/^  \([a-z][a-z]*\) .*/\1/p' | awk '!seen[$0]++'); do
        "$bin/enroll" admin "$a" --help > /dev/null 2>&1 || continue
        printf '.SH ADMIN %s\n' "$(printf '%s' "$a" | tr '[:lower:]' '[:upper:]')"
        "$bin/enroll" admin "$a" --help | verbatim
      done
    fi
    printf '%s\n' "$EXIT_CODES"
    see_also 'enroll(1)' 'enrolld(8)'
  } > "$out/man1/$page.1"
  pages+=("man1/$page.1")
done

{
  head_of enrolld 8 "the enroll provisioning service: Azure DPS over HTTPS and MQTT, the admin API"
  printf '.SH SYNOPSIS\n.B enrolld \\-\\-config\n.I FILE\n.SH DESCRIPTION\n'
  "$bin/enrolld" --help | verbatim
  printf '.SH FILES\n.TP\n/etc/enroll/enrolld.json\nthe configuration read by enrolld.service\n'
  printf '.TP\n/var/lib/enroll\nthe service'"'"'s state: the store and the CA directories\n'
  see_also 'enroll(1)' 'enroll-admin(1)' 'enroll-serve(1)'
} > "$out/man8/enrolld.8"
pages+=(man8/enrolld.8)
printf '%s\n' "${pages[@]}" > "$out/pages.txt"
