#!/usr/bin/env bash
# postgres-up.sh makes sure a PostgreSQL server answers on 127.0.0.1:5432
# with trust auth for user postgres and a database named "test": the server
# the Postgres tests use by default (EVENTSTORE_POSTGRES_DSN overrides it).
#
# It starts an installed cluster, or installs Debian's postgresql package and
# starts that, listening on 127.0.0.1 only. It needs root for the install.
set -euo pipefail

host=127.0.0.1
port=5432

ready() { pg_isready -q -h "$host" -p "$port" 2>/dev/null; }

start_cluster() {
	local version
	version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
	[ -n "$version" ] || return 1
	pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
	for _ in $(seq 1 60); do ready && return 0; sleep 0.5; done
	return 1
}

if ! ready; then
	if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
		echo "postgres-up: installing postgresql with apt-get" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -q >/dev/null
		apt-get install -y -q postgresql >/dev/null
		version=$(ls /etc/postgresql | sort -V | tail -n 1)
		conf=/etc/postgresql/$version/main
		sed -i "s/^#\?listen_addresses.*/listen_addresses = '127.0.0.1'/" "$conf/postgresql.conf"
		# Tests connect as postgres over TCP without a password.
		sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/' "$conf/pg_hba.conf"
	fi
	start_cluster || { echo "postgres-up: PostgreSQL did not start" >&2; exit 1; }
fi

if ! psql -h "$host" -p "$port" -U postgres -d test -Atqc 'select 1' >/dev/null 2>&1; then
	psql -h "$host" -p "$port" -U postgres -d postgres -qc 'create database test' >/dev/null
fi
echo "postgres-up: PostgreSQL ready on $host:$port (user postgres, database test)" >&2
