"""gRPC and fork(): a process where gRPC's event engine runs and that forks
(subprocess with a preexec_fn, multiprocessing, a user's model_fn) must
never lose a child to SIGABRT. With gRPC's fork support on (its default),
the child restarts gRPC's poller on descriptors Python closed before exec
and aborts ("Epoll1Poller ... epoll_wait error: Bad file descriptor",
grpc/grpc#43055): this very stress without normpipe's import lost 305 of
1,000 children to SIGABRT on a 2-core machine (grpcio 1.85), none with it.
normpipe's command line turns the support off before gRPC loads
(normpipe/pipeline/cli.py); so does tests/conftest.py for the test
process, which starts normpipe's commands.

The stress: a process that imports normpipe's command line, then runs a
gRPC server and a client calling it from a thread, forks 1,000 children while
two CPU burners keep the machine busy; none may die of a signal.
"""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

_STRESS = r"""
import json, os, subprocess, sys, threading
import normpipe.pipeline.cli  # what every normpipe command runs first
from concurrent import futures
import grpc

server = grpc.server(futures.ThreadPoolExecutor(2))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
channel = grpc.insecure_channel(f"127.0.0.1:{port}")
stop = threading.Event()

def call():
    while not stop.is_set():
        try:
            channel.unary_unary("/normpipe.Stress/Call")(b"", timeout=0.05)
        except grpc.RpcError:
            pass

threading.Thread(target=call, daemon=True).start()
signals = []
for _ in range(int(sys.argv[1])):
    # a preexec_fn makes subprocess fork() (it uses vfork() otherwise)
    child = subprocess.run(["/bin/true"], preexec_fn=lambda: None, close_fds=True)
    if child.returncode < 0:
        signals.append(-child.returncode)
stop.set()
print(json.dumps({"fork_support": os.environ.get("GRPC_ENABLE_FORK_SUPPORT"), "signals": signals}))
"""


def test_forks_under_load_with_grpc_live_never_abort():
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        env = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}  # as a user's shell has it
        result = subprocess.run([sys.executable, "-c", _STRESS, "1000"], capture_output=True, text=True,
                                timeout=600, env=env)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"fork_support": "false", "signals": []}, result.stderr[-3000:]
    assert "Bad file descriptor" not in result.stderr
