import asyncio

import asyncpg
import pytest
from yourclaw_common.db import (
    RECOMMENTED,
    Migration,
    close_pool,
    create_pool,
    load_migrations,
    migrate,
)
from yourclaw_common.testing import eventually


class TestMigrate:
    async def test_every_table_of_the_data_model_exists(self, db_pool):
        names = {
            r["tablename"]
            for r in await db_pool.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname='public'"
            )
        }
        assert {
            "users",
            "user_phones",
            "assistants",
            "hosts",
            "messages",
            "usage_daily",
            "api_keys",
            "subscriptions",
            "stripe_events",
            "provisioning_jobs",
            "processed_events",
            "outbox",
            "schema_migrations",
        } <= names

    async def test_second_run_applies_nothing(self, database_url):
        conn = await asyncpg.connect(database_url)
        try:
            assert await migrate(conn) == []
        finally:
            await conn.close()

    async def test_concurrent_runners_apply_each_migration_once(self, infra):
        admin = await asyncpg.connect(infra.database_url)
        await admin.execute('DROP DATABASE IF EXISTS "mig_race" WITH (FORCE)')
        await admin.execute('CREATE DATABASE "mig_race"')
        dsn = infra.database_url.rsplit("/", 1)[0] + "/mig_race"
        # A slow extra migration widens the window in which the runners overlap.
        migrations = [
            *load_migrations(),
            Migration(
                "9999_slow", "SELECT pg_sleep(0.5); CREATE TABLE slow_marker (id int);"
            ),
        ]

        async def runner():
            conn = await asyncpg.connect(dsn)
            try:
                return await migrate(conn, migrations)
            finally:
                await conn.close()

        try:
            results = await asyncio.gather(runner(), runner(), runner())
            applied = sorted(v for r in results for v in r)
            assert applied == sorted(m.version for m in migrations)
            assert [] in results  # the runners that waited found nothing to do
            conn = await asyncpg.connect(dsn)
            try:
                count = await conn.fetchval("SELECT count(*) FROM schema_migrations")
            finally:
                await conn.close()
            assert count == len(migrations)
        finally:
            await admin.execute('DROP DATABASE IF EXISTS "mig_race" WITH (FORCE)')
            await admin.close()

    async def test_changed_migration_is_refused(self, database_url):
        conn = await asyncpg.connect(database_url)
        try:
            changed = [
                Migration(m.version, m.sql + "\n-- edited") for m in load_migrations()
            ]
            with pytest.raises(RuntimeError, match="changed after it was applied"):
                await migrate(conn, changed)
        finally:
            await conn.close()

    async def test_a_migration_whose_comments_alone_were_edited_is_up_to_date(
        self, infra
    ):
        # A database migrated before 0001's comments were edited.
        admin = await asyncpg.connect(infra.database_url)
        await admin.execute('DROP DATABASE IF EXISTS "mig_recomment" WITH (FORCE)')
        await admin.execute('CREATE DATABASE "mig_recomment"')
        dsn = infra.database_url.rsplit("/", 1)[0] + "/mig_recomment"
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
            [before] = RECOMMENTED["0001_initial"]
            await conn.execute(
                "UPDATE schema_migrations SET checksum = $1 "
                "WHERE version = '0001_initial'",
                before,
            )

            assert await migrate(conn) == []
            [current] = [m for m in load_migrations() if m.version == "0001_initial"]
            assert (
                await conn.fetchval(
                    "SELECT checksum FROM schema_migrations WHERE version = '0001_initial'"
                )
                == current.checksum
            )
        finally:
            await conn.close()
            await admin.execute('DROP DATABASE IF EXISTS "mig_recomment" WITH (FORCE)')
            await admin.close()


class TestPool:
    async def test_connection_left_in_a_transaction_comes_back_clean(
        self, database_url
    ):
        pool = await create_pool(database_url, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                await conn.execute("CREATE TEMP TABLE IF NOT EXISTS t_reset (n int)")
                # A handler cancelled mid-transaction: never committed.
                await conn.transaction().start()
                await conn.execute("INSERT INTO t_reset VALUES (1)")
            async with pool.acquire() as conn:  # the same connection (max_size=1)
                assert not conn.is_in_transaction()
                async with conn.transaction():
                    await conn.execute("INSERT INTO t_reset VALUES (2)")
                assert await conn.fetchval("SELECT count(*) FROM t_reset") == 1
        finally:
            await pool.close()

    async def test_a_connection_never_given_back_does_not_hold_shutdown(
        self, database_url, caplog
    ):
        pool = await create_pool(database_url, min_size=1, max_size=2)
        kept = await pool.acquire()  # a task that took it and never gave it back
        session = await kept.fetchval("SELECT pg_backend_pid()")

        # Without a bound pool.close() would wait for `kept` forever.
        await close_pool(pool, seconds=1)

        assert pool.is_closing()
        assert "postgres.pool.close_timeout" in caplog.text
        # Its session is cut, not left open on the server.
        probe = await asyncpg.connect(database_url)
        try:

            async def session_gone() -> bool:
                return not await probe.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", session
                )

            assert await eventually(session_gone, timeout=10)
        finally:
            await probe.close()
