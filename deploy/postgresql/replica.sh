#!/bin/sh
# Make this machine a streaming replica of the primary (Debian, PostgreSQL 16), once:
#   PRIMARY=db-primary ./replica.sh
set -eu
systemctl stop postgresql@16-main
rm -rf /var/lib/postgresql/16/main
sudo -u postgres pg_basebackup -h "$PRIMARY" -U replicator -D /var/lib/postgresql/16/main -R -X stream -P
cat > /etc/postgresql/16/main/conf.d/fature-replica.conf <<CONF
listen_addresses = '*'
hot_standby = on
hot_standby_feedback = on
max_standby_streaming_delay = 30s
CONF
systemctl start postgresql@16-main
sudo -u postgres psql -Atc "SELECT pg_is_in_recovery()"   # t
