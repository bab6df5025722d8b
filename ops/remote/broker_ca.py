"""Prints the CA file of the broker URL read from stdin (app-fetch-secrets URL-encodes it into the
query as ssl_ca_certs), or an empty line when it names none."""

import sys
import urllib.parse

query = urllib.parse.urlsplit(sys.stdin.read()).query
print(urllib.parse.parse_qs(query).get("ssl_ca_certs", [""])[0])
