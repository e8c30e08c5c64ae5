"""Finding Java and the Apache Kafka jars (fetched once with Maven into a per-user cache).

Cache layout: ``$EVENTWIRE_KAFKA_CACHE/<version>/libs/`` when that variable is set, else
``${XDG_CACHE_HOME:-~/.cache}/eventwire/kafka/<version>/libs/``. A fetch runs Maven into a
temporary ``.fetch-*`` directory beside ``libs`` and renames it into place only once it is
complete, under a file lock, so a killed or concurrent fetch never leaves a half cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path

from eventwire_devkit._kafka.errors import JarFetchError, JavaNotFoundError, MavenNotFoundError

__all__ = [
    "POM_PATH",
    "Progress",
    "cache_root",
    "ensure_jars",
    "find_java",
    "kafka_cache_dir",
]

Progress = Callable[[str], None]

POM_PATH = Path(__file__).with_name("pom.xml")
_COMPLETE_MARKER = ".complete"
_MIN_JAVA = 17
_MAVEN_TIMEOUT_S = 900.0


def cache_root() -> Path:
    """Return ``${XDG_CACHE_HOME:-~/.cache}/eventwire``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "eventwire"


def kafka_cache_dir(version: str) -> Path:
    """Return the cache directory for one Kafka version (``libs/`` lives inside)."""
    override = os.environ.get("EVENTWIRE_KAFKA_CACHE")
    root = Path(override).expanduser() if override else cache_root() / "kafka"
    return root / version


def _java_problem(java: Path) -> tuple[int | None, str]:
    """Return ``(major version, "")`` for a usable java, else ``(None, what is wrong)``."""
    if not java.exists():
        return None, f"{java} does not exist"
    if not os.access(java, os.X_OK) or java.is_dir():
        return None, f"{java} is not executable"
    try:
        out = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"running `{java} -version` failed: {exc}"
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None, f"could not read the version from `{java} -version`"
    major = int(match[1])
    if major == 1 and match[2]:
        major = int(match[2])
    if major < _MIN_JAVA:
        return None, f"{java} is Java {major}"
    return major, ""


@lru_cache(maxsize=4)
def _probe_java(java_home: str | None, path: str | None) -> tuple[str | None, str]:
    """Return ``(java, "")``, or ``(None, the reason and what to do)``.

    A set ``JAVA_HOME`` is the choice, as for Maven and Kafka's own scripts: its java or
    none, never silently the one on PATH instead.
    """
    on_path = shutil.which("java", path=path)
    if java_home:
        java = Path(java_home).expanduser() / "bin" / "java"
        major, problem = _java_problem(java)
        if major is not None:
            return str(java), ""
        if on_path:
            advice = (
                f"the java on PATH ({on_path}) is not used while JAVA_HOME is set. Point "
                f"JAVA_HOME at a Java {_MIN_JAVA}+ installation, or unset it to use that one."
            )
        else:
            advice = (
                f"there is no `java` on PATH either. Point JAVA_HOME at a Java {_MIN_JAVA}+ "
                "installation (e.g. `apt-get install openjdk-17-jre-headless`)."
            )
        return None, f"JAVA_HOME={java_home} gives no usable java ({problem}); {advice}"
    if not on_path:
        return None, (
            "there is no `java` on PATH and JAVA_HOME is not set. Install a JDK/JRE (e.g. "
            "`apt-get install openjdk-17-jre-headless`) or set JAVA_HOME."
        )
    major, problem = _java_problem(Path(on_path))
    if major is not None:
        return on_path, ""
    return None, (
        f"{problem} (the java on PATH; JAVA_HOME is not set). Install a JDK/JRE {_MIN_JAVA}+ "
        "(e.g. `apt-get install openjdk-17-jre-headless`) and put it first on PATH, or set "
        "JAVA_HOME to it."
    )


def find_java() -> str:
    """Return the path of a Java >= 17 executable: ``$JAVA_HOME/bin/java``, else PATH's.

    When ``JAVA_HOME`` is set, its java is the only one considered (as Maven and Kafka's
    scripts do): a wrong ``JAVA_HOME`` is an error that says so, even with a java on PATH.

    Raises:
        JavaNotFoundError: no suitable Java was found; the message says why and what to do.

    """
    java, reason = _probe_java(os.environ.get("JAVA_HOME"), os.environ.get("PATH"))
    if java is None:
        raise JavaNotFoundError(
            f"Java {_MIN_JAVA} or newer is needed to run a local Apache Kafka broker, but {reason}"
        )
    return java


def _is_complete(libs: Path) -> bool:
    return (libs / _COMPLETE_MARKER).is_file()


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _libs_from_kafka_home(kafka_home: str) -> Path:
    libs = Path(kafka_home).expanduser() / "libs"
    if not any(libs.glob("kafka_*.jar")):
        raise JarFetchError(
            f"KAFKA_HOME={kafka_home} has no libs/kafka_*.jar. Point KAFKA_HOME at an unpacked "
            "Apache Kafka distribution, or unset it to let eventwire fetch the jars with Maven."
        )
    return libs


def _run_maven(mvn: str, version: str, work: Path, out_dir: Path) -> None:
    pom = work / "pom.xml"
    shutil.copyfile(POM_PATH, pom)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={out_dir}",
        f"-Dkafka.version={version}",
    ]
    try:
        result = subprocess.run(
            cmd,
            cwd=work,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_MAVEN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise JarFetchError(f"Maven did not finish within {_MAVEN_TIMEOUT_S:.0f} s") from exc
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise JarFetchError(
            f"`{' '.join(cmd)}` failed with exit code {result.returncode} (no network access "
            f"to Maven Central? set KAFKA_HOME to an unpacked Kafka {version} to skip it):\n"
            f"{tail}"
        )
    if not any(out_dir.glob(f"kafka_*-{version}.jar")):
        raise JarFetchError(f"Maven succeeded but {out_dir} holds no kafka_*-{version}.jar")


def ensure_jars(version: str, progress: Progress | None = None) -> Path:
    """Return a directory of jars that runs Kafka ``version``; fetch them once if needed.

    ``$KAFKA_HOME/libs`` is used as is when ``KAFKA_HOME`` is set.

    Raises:
        MavenNotFoundError: the jars are not cached and ``mvn`` is not on PATH.
        JavaNotFoundError: Maven needs Java and none was found.
        JarFetchError: Maven failed, or ``KAFKA_HOME`` holds no Kafka jars.

    """
    kafka_home = os.environ.get("KAFKA_HOME")
    if kafka_home:
        return _libs_from_kafka_home(kafka_home)
    base = kafka_cache_dir(version)
    libs = base / "libs"
    if _is_complete(libs):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MavenNotFoundError(
            f"The Apache Kafka {version} jars are not cached in {libs} and Maven (`mvn`) is not "
            "on PATH to fetch them. Install Maven (e.g. `apt-get install maven`), or set "
            f"KAFKA_HOME to an unpacked Apache Kafka {version} distribution."
        )
    find_java()
    base.mkdir(parents=True, exist_ok=True)
    with _locked(base / ".lock"):
        if _is_complete(libs):  # another process finished the fetch while we waited
            return libs
        for stale in base.glob(".fetch-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if libs.exists():  # not ours to trust: no completion marker
            shutil.rmtree(libs)
        if progress is not None:
            progress(f"Fetching Apache Kafka {version} jars with Maven into {libs}")
        work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=base))
        try:
            out_dir = work / "libs"
            _run_maven(mvn, version, work, out_dir)
            (out_dir / _COMPLETE_MARKER).write_text(f"kafka {version}\n")
            out_dir.rename(libs)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return libs
