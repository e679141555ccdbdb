# Sourced by the mariadb image's entrypoint on the first start of an empty data
# volume (docker-compose.yml mounts it into /docker-entrypoint-initdb.d/): the
# least-privilege account masters and workers use. It reads and writes data only;
# the schema belongs to MARIADB_USER (nightfold), which `nightfold db upgrade` uses.
# Not executable on purpose: the entrypoint sources it, which gives it
# docker_process_sql. Same grants as docs/deploy.md, "Accounts with least privilege".
docker_process_sql --database=mysql <<SQL
CREATE USER IF NOT EXISTS 'nightfold_app'@'%' IDENTIFIED BY '${MARIADB_APP_PASSWORD:?}';
GRANT SELECT, INSERT, UPDATE, DELETE ON \`${MARIADB_DATABASE:?}\`.* TO 'nightfold_app'@'%';
SQL
