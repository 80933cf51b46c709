"""A local S3-compatible server (moto's server mode, the real S3 HTTP API) on a free loopback port, for the tests."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.served import free_port, wait_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "fitboard-test", "AWS_SECRET_ACCESS_KEY": "fitboard-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


class S3Server:
    """moto_server in a subprocess; a bucket of the test's own; stopped afterwards."""

    def __init__(self, home: Path):
        if shutil.which("moto_server", path=str(Path(sys.executable).parent)) is None:
            if os.environ.get("CI") == "true":
                pytest.fail("moto[server] is not installed and CI=true requires it")
            pytest.skip("moto[server] is not installed (pip install -e '.[test]')")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {**CREDENTIALS, "FITBOARD_S3_ENDPOINT_URL": self.endpoint}
        log = open(home / f"moto-{self.port}.log", "w")
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1",
                                      "-p", str(self.port)], stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port, "moto_server")

    def client(self):
        """A boto3 client on the server."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")

    def bucket(self, name: str) -> str:
        """Create a bucket; its s3:// URL with a prefix."""
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}/fitboard"

    def keys(self, name: str) -> list[str]:
        """Every key in a bucket, sorted."""
        return sorted(o["Key"] for o in self.client().list_objects_v2(Bucket=name).get("Contents", []))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
