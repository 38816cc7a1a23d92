"""API keys: only a hash of the secret is stored, a revoked key is unknown, and the
`chess-analysis-keys` command creates, lists and revokes them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from db import tenants
from db.tenants import Quotas

ROOT = Path(__file__).resolve().parent.parent
KEYS = str(Path(sys.executable).parent / "chess-analysis-keys")
"""The console script `pip install` put next to this Python."""


async def test_a_key_is_found_by_its_secret_of_which_only_a_hash_is_stored(
    pool: asyncpg.Pool,
) -> None:
    quotas = Quotas(max_queued=20, engine_seconds_per_hour=600.0, weight=2.0)
    created, secret = await tenants.create(pool, "my-app", quotas=quotas)
    assert secret.startswith("cak_") and len(secret) > 40
    assert (created.name, created.quotas, created.scopes) == (
        "my-app",
        quotas,
        frozenset({tenants.ANALYSE}),
    )
    assert not created.is_admin and not created.is_anonymous
    assert created.created_at is not None and created.revoked_at is None

    found = await tenants.by_secret(pool, secret)
    assert found == created
    row = await pool.fetchrow("SELECT * FROM api_keys WHERE id = $1", created.id)
    assert row["secret_hash"] == tenants.hash_secret(secret)
    assert secret not in {str(value) for value in row.values()}

    assert await tenants.by_secret(pool, secret + "x") is None
    assert await tenants.by_secret(pool, "") is None


async def test_a_revoked_key_is_unknown_and_stays_listed(pool: asyncpg.Pool) -> None:
    _, secret = await tenants.create(pool, "gone")
    kept, _ = await tenants.create(pool, "kept", admin=True)
    assert kept.is_admin and kept.scopes == {tenants.ANALYSE, tenants.ADMIN}
    assert await tenants.revoke(pool, "gone")
    assert await tenants.by_secret(pool, secret) is None
    assert not await tenants.revoke(pool, "gone"), "already revoked"
    assert not await tenants.revoke(pool, "never")
    assert not await tenants.revoke(pool, "anonymous"), "the anonymous tenant is no key"
    listed = {tenant.name: tenant for tenant in await tenants.list_all(pool)}
    assert set(listed) == {"gone", "kept"}, "the anonymous tenant is not listed"
    assert listed["gone"].revoked_at is not None
    assert listed["kept"].revoked_at is None


async def test_a_name_is_taken_once_and_quotas_are_positive(pool: asyncpg.Pool) -> None:
    await tenants.create(pool, "my-app")
    with pytest.raises(ValueError, match="exists already"):
        await tenants.create(pool, "my-app")
    with pytest.raises(ValueError, match="exists already"):
        await tenants.create(pool, "anonymous")
    for quotas in (Quotas(max_queued=0), Quotas(engine_seconds_per_hour=0), Quotas(weight=-1)):
        with pytest.raises(ValueError):
            await tenants.create(pool, "other", quotas=quotas)
    assert [tenant.name for tenant in await tenants.list_all(pool)] == ["my-app"]


async def test_a_new_tenant_has_a_full_bucket(pool: asyncpg.Pool) -> None:
    created, _ = await tenants.create(pool, "a", quotas=Quotas(engine_seconds_per_hour=60))
    usage = await tenants.usage(pool, created)
    assert usage == tenants.Usage(
        queued=0, running=0, engine_seconds_available=60, engine_seconds_last_hour=0
    )


# The command


async def keys(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    process = await asyncio.create_subprocess_exec(
        KEYS,
        *arguments,
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return subprocess.CompletedProcess(
        [KEYS, *arguments], process.returncode, stdout.decode(), stderr.decode()
    )


def environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    """This process's environment without database settings, plus `settings`."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "DB_URL", "DB_DATA_DIR")
    }
    return {**kept, "DB_DATA_DIR": str(tmp_path / "data"), **settings}


async def test_the_command_creates_lists_and_revokes_keys(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    env = environment(tmp_path, DATABASE_URL=database_url)
    created = await keys(
        "create", "my-app", "--max-queued", "20", "--engine-seconds-per-hour", "600", env=env
    )
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert created.stdout == secret + "\n", "the secret alone on stdout"
    assert f"Authorization: Bearer {secret}" in created.stderr
    tenant = await tenants.by_secret(pool, secret)
    assert tenant is not None and tenant.name == "my-app"
    assert tenant.quotas == Quotas(max_queued=20, engine_seconds_per_hour=600, weight=1)

    admin = await keys("create", "boss", "--admin", "--weight", "2.5", env=env)
    assert admin.returncode == 0, admin.stderr
    boss = await tenants.by_secret(pool, admin.stdout.strip())
    assert boss is not None and boss.is_admin and boss.quotas.weight == 2.5

    again = await keys("create", "my-app", env=env)
    assert again.returncode == 1
    assert "a key named 'my-app' exists already" in again.stderr
    assert again.stdout == ""

    assert (await keys("revoke", "boss", env=env)).returncode == 0
    assert await tenants.by_secret(pool, admin.stdout.strip()) is None
    unknown = await keys("revoke", "boss", env=env)
    assert unknown.returncode == 1 and "no key named 'boss'" in unknown.stderr

    listed = await keys("list", env=env)
    assert listed.returncode == 0, listed.stderr
    header, *lines = listed.stdout.splitlines()
    assert header.split() == [
        "NAME", "SCOPES", "MAX", "QUEUED", "ENGINE", "S/HOUR", "WEIGHT", "CREATED", "REVOKED"
    ]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines}
    assert set(rows) == {"my-app", "boss"}
    assert rows["my-app"][1:5] == ["analyse", "20", "600", "1"]
    assert rows["my-app"][-1] == "-", "not revoked"
    assert rows["boss"][1:5] == ["admin,analyse", "-", "-", "2.5"]
    assert rows["boss"][-1] != "-", "revoked"
    assert secret not in listed.stdout and admin.stdout.strip() not in listed.stdout


@pytest.mark.parametrize(
    "arguments",
    [
        ["create", "x", "--max-queued", "0"],
        ["create", "x", "--max-queued", "many"],
        ["create", "x", "--engine-seconds-per-hour", "-5"],
        ["create", "x", "--weight", "nan"],
        ["create", " x"],
        ["create"],
        ["revoke"],
        ["list", "extra"],
        ["bogus"],
        ["--bogus"],
        [],
    ],
)
async def test_the_command_refuses_bad_arguments_before_touching_a_database(
    arguments: list[str], tmp_path: Path
) -> None:
    result = await keys(*arguments, env=environment(tmp_path))
    assert result.returncode == 2, result
    assert result.stderr.startswith("usage: "), result.stderr
    assert "error:" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "data").exists(), "no embedded server was started"


@pytest.mark.parametrize("arguments", [["--help"], ["create", "--help"], ["revoke", "-h"]])
async def test_the_command_explains_itself(arguments: list[str], tmp_path: Path) -> None:
    result = await keys(*arguments, env=environment(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: chess-analysis-keys")
    if arguments == ["--help"]:
        for word in ("create", "list", "revoke", "Authorization: Bearer", "DATABASE_URL"):
            assert word in result.stdout, word
    if arguments[0] == "create":
        for word in ("--admin", "--max-queued", "--engine-seconds-per-hour", "--weight"):
            assert word in result.stdout, word
    assert not (tmp_path / "data").exists()


async def test_the_command_says_when_the_database_is_not_migrated(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    await pool.execute("DROP TABLE api_keys CASCADE")
    result = await keys("list", env=environment(tmp_path, DATABASE_URL=database_url))
    assert result.returncode == 1
    assert "chess-analysis-migrate" in result.stderr
    assert "Traceback" not in result.stderr
