#!/usr/bin/env python3
"""An Interlock worker in Python: serves one job type declared in the
server's configs/jobs.json, e.g.

    {"jobs": [{"name": "pyEcho", "idempotency": "safe",
               "args": [{"name": "text", "required": true, "format": "text"},
                        {"name": "seconds", "format": "seconds"}]}]}

Each task saves a checkpoint, logs a line, waits `seconds` (stopping at
once when the server cancels it), and answers with the text. Stubs are generated from
proto/ when the worker starts (grpcio-tools), so nothing generated is
checked in. Needs: pip install grpcio grpcio-tools.
"""
import argparse, importlib, os, queue, socket, sys, tempfile, threading, time

import grpc
import grpc_tools
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))


def load_stubs(proto_dir):
    out = tempfile.mkdtemp(prefix="interlock-stubs-")
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"-I{wkt}", f"--python_out={out}",
                      f"--grpc_python_out={out}", "interlock/v1/worker.proto"])
    if rc != 0:
        sys.exit(f"cannot generate stubs from {proto_dir}")
    sys.path.insert(0, out)
    return (importlib.import_module("interlock.v1.worker_pb2"),
            importlib.import_module("interlock.v1.worker_pb2_grpc"))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--addr", default=os.environ.get("INTERLOCK_ADDR", "127.0.0.1:8080"))
    p.add_argument("--token", default=os.environ.get("INTERLOCK_TOKEN"))
    p.add_argument("--type", default="pyEcho", help="the job type to serve")
    p.add_argument("--name", default=f"{socket.gethostname()}/{os.getpid()}")
    p.add_argument("--capacity", type=int, default=4)
    p.add_argument("--proto", default=os.path.join(HERE, "..", "..", "proto"))
    a = p.parse_args()
    pb, rpc = load_stubs(a.proto)
    meta = [("authorization", f"Bearer {a.token}")] if a.token else []
    addr = a.addr.split("://", 1)[-1]
    while True:
        try:
            session(pb, rpc.WorkerStub(grpc.insecure_channel(addr)), meta, a)
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION,
                            grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT):
                sys.exit(f"refused: {e.details()}")
            print(f"session lost: {e.code().name}; reconnecting", file=sys.stderr, flush=True)
        time.sleep(0.5)


def session(pb, stub, meta, a):
    outbox, running = queue.Queue(), {}
    outbox.put(pb.WorkerMsg(hello=pb.WorkerHello(name=a.name, job_types=[a.type],
                                                 capacity=a.capacity)))
    ended = threading.Event()

    def requests():  # the worker's half: the hello, then heartbeats
        while not ended.is_set():
            try:
                yield outbox.get(timeout=0.1)
            except queue.Empty:
                pass

    try:
        for msg in stub.Session(requests(), metadata=meta):
            kind = msg.WhichOneof("msg")
            if kind == "welcome":
                beat = msg.welcome.heartbeat_ms / 1000
                threading.Thread(target=heartbeats, args=(pb, outbox, beat, ended),
                                 daemon=True).start()
                print(f"worker {a.name}: serving {a.type}", file=sys.stderr, flush=True)
            elif kind == "task":
                cancel = running[msg.task.lease_id] = threading.Event()
                threading.Thread(target=run, args=(pb, stub, meta, msg.task, cancel, running, ended,
                                                   outbox), daemon=True).start()
            elif kind == "cancel" and msg.cancel.lease_id in running:
                running[msg.cancel.lease_id].set()
    finally:
        ended.set()  # the server gave our tasks up: stop them, report nothing
        for c in list(running.values()):
            c.set()


def heartbeats(pb, outbox, every, ended):
    while not ended.wait(every):
        outbox.put(pb.WorkerMsg(heartbeat=pb.Heartbeat()))


def run(pb, stub, meta, task, cancel, running, ended, outbox):
    lease, logged = task.lease_id, [0]

    def log(line):  # kept with the job's attempt on the server (interlock logs)
        outbox.put(pb.WorkerMsg(log=pb.TaskLog(lease_id=lease, lines=[line])))
        logged[0] += 1

    try:
        stub.Checkpoint(pb.TaskCheckpoint(lease_id=lease, state="started"), metadata=meta)
        log(f"python worker {os.getpid()}: echoing {task.args['text']!r}")
        if cancel.wait(float(task.args.get("seconds", "0"))):
            result = pb.TaskResult(lease_id=lease, failed=pb.TaskFailed(message="cancelled"))
        else:
            out = {"echo": task.args["text"], "worker": "python"}
            result = pb.TaskResult(lease_id=lease, done=pb.TaskDone(outputs=out))
        if not ended.is_set():
            result.log_lines = logged[0]  # the server waits for them before recording the end
            stub.Complete(result, metadata=meta)
    except grpc.RpcError as e:
        print(f"task {lease}: {e.code().name}: {e.details()}", file=sys.stderr, flush=True)
    finally:
        running.pop(lease, None)


if __name__ == "__main__":
    main()
