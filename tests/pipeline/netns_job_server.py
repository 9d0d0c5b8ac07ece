"""Beam's local job service, reachable from other hosts: `python netns_job_server.py ADDRESS PORT`.

`local_job_service_main` binds its job API to localhost only. This runs the
same `LocalJobServicer` with the two methods its docstring names for serving
external machines overridden: bind on every interface, and give clients
ADDRESS as the artifact staging host. Pipelines run in Beam's FnApiRunner in
this process, with the environment the client asks for.
"""

import sys
import time

from apache_beam.runners.portability import local_job_service


class ExternalJobServicer(local_job_service.LocalJobServicer):
    def __init__(self, address: str):
        super().__init__()
        self._address = address

    def get_bind_address(self):
        return "[::]"

    def get_service_address(self):
        return self._address


def main(address: str, port: int) -> None:
    servicer = ExternalJobServicer(address)
    bound = servicer.start_grpc_server(port)
    print(f"job server listening on {address}:{bound}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
