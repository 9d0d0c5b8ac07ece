"""Pre-forked SDK workers for `--direct_running_mode=multi_processing`.

Beam's local runner starts each multi_processing worker as a fresh
interpreter (`python -m apache_beam.runners.worker.sdk_worker_main`) once the
pipeline runs; each then imports Beam, TensorFlow and tf.Transform again,
some 4 CPU-seconds per worker that on a 2-core machine cost more than the
second worker gains. Here the workers are forked from the normpipe process
right after those imports and before normpipe creates a TensorFlow session,
a gRPC channel or server, or uses Arrow's thread pool (the imports leave only
an allocator's and a library's idle background threads, which a fork does not
copy), so each starts with the libraries loaded and shares their memory
copy-on-write.

The runner is Beam's own FnApiRunner with an EXTERNAL environment: it asks
the pool (a gRPC BeamFnExternalWorkerPool service in this process) for each
worker, and the pool hands the runner's control address to a waiting fork,
which runs Beam's SDK harness exactly as `sdk_worker_main` does. Beam has no
fork-based worker of its own; this module is the glue between the two.

A worker that is never started exits when this process closes its pipe; a
started one exits when the runner closes its control channel.
"""

import contextlib
import functools
import gc
import importlib
import json
import os
import signal
import sys
import time

_POOL = None


def requested_workers(beam_args) -> int:
    """Workers asked for with --direct_running_mode=multi_processing on the
    local runner (0 when not, or when another runner is named), counted as
    beam_options.make_options counts them."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions  # pylint: disable=import-outside-toplevel

    from normpipe.pipeline import beam_options  # pylint: disable=import-outside-toplevel

    options = beam_options.make_options(beam_args)
    if options.view_as(StandardOptions).runner not in ("DirectRunner", "FnApiRunner", beam_options.LOCAL_RUNNER):
        return 0
    direct = options.view_as(DirectOptions)
    return direct.direct_num_workers if direct.direct_running_mode == "multi_processing" else 0


# What a worker imports to run normpipe's stages, loaded once before the forks.
PRELOAD = (
    "tensorflow",
    "tensorflow_transform.beam",
    "apache_beam.runners.worker.sdk_worker_main",
    "normpipe.components.csv_reader",
    "normpipe.components.ingest",
    "normpipe.components.statistics",
    "normpipe.components.tfrecord_reader",
    "normpipe.components.transform",
)


def _preload():
    for name in PRELOAD:
        importlib.import_module(name)


def _serve_one(read_fd: int) -> None:
    """In a fork: waits for a StartWorker request, then runs the SDK harness.

    Never returns: the fork must not go on running the parent's code.
    Ctrl-C is the parent's to handle; a fork ends with its pipe or its
    control channel.
    """
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with os.fdopen(read_fd, "rb") as pipe:
            message = pipe.read()
        if message:
            from apache_beam.runners.worker import sdk_worker_main  # pylint: disable=import-outside-toplevel

            environment = json.loads(message.decode("utf-8"))
            options = json.loads(environment["PIPELINE_OPTIONS"]).get("options", {})
            if options.get("default_sdk_harness_log_level") == "CRITICAL":
                # Beam's harness prints a failed bundle's traceback to stderr
                # besides sending it to the runner, which raises it in the
                # normpipe process; there it becomes one error line. Quiet
                # unless a worker log level is asked for.
                sys.stderr = open(os.devnull, "w", encoding="utf-8")  # pylint: disable=consider-using-with
            _, harness, _ = sdk_worker_main.create_harness(environment)
            harness.run()
        code = 0
    except BaseException:  # pylint: disable=broad-except
        pass
    finally:
        os._exit(code)  # pylint: disable=protected-access


class ForkedWorkerPool:
    """`count` forked workers and the pool service that hands them out."""

    def __init__(self, count: int):
        _preload()
        self._pipes, self._pids = [], []
        # A fork inherits unwritten output buffers; empty them first so
        # nothing is written twice.
        sys.stdout.flush()
        sys.stderr.flush()
        # Objects that exist now are shared with the forks; the collector
        # would write to every one of them (and so copy its page) in each.
        gc.freeze()
        for _ in range(count):
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(write_fd)
                for fd in self._pipes:
                    os.close(fd)
                _serve_one(read_fd)
            os.close(read_fd)
            self._pipes.append(write_fd)
            self._pids.append(pid)
        self._server = None
        self.url = None

    def _start(self):
        """The pool service, started after the forks (gRPC is not fork-safe)."""
        from concurrent import futures  # pylint: disable=import-outside-toplevel

        import grpc  # pylint: disable=import-outside-toplevel
        from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc  # pylint: disable=import-outside-toplevel

        pool = self

        class Servicer(beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolServicer):
            def StartWorker(self, request, context):  # noqa: N802 -- gRPC method name
                error = pool.hand_out(request)
                return beam_fn_api_pb2.StartWorkerResponse(error=error or "")

            def StopWorker(self, request, context):  # noqa: N802
                return beam_fn_api_pb2.StopWorkerResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(Servicer(), self._server)
        port = self._server.add_insecure_port("localhost:0")
        self._server.start()
        self.url = f"localhost:{port}"

    def hand_out(self, request):
        """Sends one fork the worker's environment; returns an error or None."""
        if not self._pipes:
            return "no forked worker left"
        fd = self._pipes.pop(0)
        environment = {
            "CONTROL_API_SERVICE_DESCRIPTOR": f'url: "{request.control_endpoint.url}"',
            "WORKER_ID": request.worker_id,
            "PIPELINE_OPTIONS": request.params.get("PIPELINE_OPTIONS", "{}"),
        }
        with os.fdopen(fd, "wb") as pipe:
            pipe.write(json.dumps(environment).encode("utf-8"))
        return None

    def runner(self, options):
        """A FnApiRunner whose workers are this pool's forks."""
        from apache_beam.options.pipeline_options import DirectOptions  # pylint: disable=import-outside-toplevel
        from apache_beam.transforms import environments  # pylint: disable=import-outside-toplevel

        if self._server is None:
            self._start()
        workers = options.view_as(DirectOptions).direct_num_workers or len(self._pids)
        if workers > len(self._pipes):
            return None  # a second pipeline in one command: Beam's own subprocess workers
        document = json.dumps({"options": options.get_all_options(drop_default=True)})
        environment = environments.ExternalEnvironment(self.url, params={"PIPELINE_OPTIONS": document})
        return _pool_runner_class()(environment, workers)

    def close(self, timeout: float = 10.0):
        """Ends the forks: unused ones read end-of-file and exit; a started
        one exits when its runner closes the control channel. Any still
        running after `timeout` seconds (0 after a failure) is killed."""
        for fd in self._pipes:
            os.close(fd)
        self._pipes = []
        if self._server is not None:
            self._server.stop(None)
            self._server = None
        deadline = time.monotonic() + timeout
        for pid in self._pids:
            while True:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                if time.monotonic() >= deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.02)
        self._pids = []


@contextlib.contextmanager
def _local_endpoints():
    """The forks reach the runner's services on localhost.

    Beam gives EXTERNAL workers its control, data and state addresses under
    this machine's fully qualified name, which need not resolve; the forks
    run on this machine, where the services listen on every interface.
    """
    from apache_beam.runners.portability.fn_api_runner import worker_handlers  # pylint: disable=import-outside-toplevel

    handler = worker_handlers.ExternalWorkerHandler
    original = handler.host_from_worker
    handler.host_from_worker = lambda self: "localhost"
    try:
        yield
    finally:
        handler.host_from_worker = original


@functools.lru_cache(maxsize=None)
def _pool_runner_class():
    from apache_beam.runners.portability.fn_api_runner import fn_runner  # pylint: disable=import-outside-toplevel

    class PoolRunner(fn_runner.FnApiRunner):
        """FnApiRunner on the pool's workers, `workers` of them in parallel."""

        def __init__(self, environment, workers):
            super().__init__(default_environment=environment)
            self._pool_workers = workers

        def run_pipeline(self, pipeline, options):
            from apache_beam.options.pipeline_options import DirectOptions  # pylint: disable=import-outside-toplevel

            # "in_memory" keeps FnApiRunner from replacing the environment
            # with its own subprocess command; the worker count still applies.
            direct = options.view_as(DirectOptions)
            direct.direct_running_mode, direct.direct_num_workers = "in_memory", 1
            return super().run_pipeline(pipeline, options)

        def run_via_runner_api(self, pipeline_proto, options):
            self._num_workers = self._pool_workers
            with _local_endpoints():
                return super().run_via_runner_api(pipeline_proto, options)

    return PoolRunner


def start(beam_args):
    """Forks the workers --direct_running_mode=multi_processing asks for."""
    global _POOL  # pylint: disable=global-statement
    count = requested_workers(beam_args)
    if count > 1 and _POOL is None and hasattr(os, "fork"):
        _POOL = ForkedWorkerPool(count)
    return _POOL


def runner_for(options):
    """The pool's runner for `options`, or None for Beam's own choice."""
    if _POOL is None:
        return None
    return _POOL.runner(options)


def stop(failed: bool = False):
    """Ends the pool's forks (at once when the command failed)."""
    global _POOL  # pylint: disable=global-statement
    if _POOL is not None:
        _POOL.close(timeout=0.0 if failed else 10.0)
        _POOL = None
