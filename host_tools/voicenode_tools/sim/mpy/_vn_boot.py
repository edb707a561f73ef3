# Bootstrap of the virtual board (MicroPython Unix port; never deployed).
#
# Run by the supervisor as `micropython -X heapsize=N -i _vn_boot.py FLASH PORT CAUSE MODE UID`.
# It installs the simulated `machine`, mounts the board's littlefs flash image at `/` in place
# of the host file system, runs /boot.py (and /main.py when the REPL comes up friendly, as on
# the ESP32 port; MODE "repl" skips it after a Ctrl-C restart), prints a sentinel the supervisor
# strips, and falls into the Unix port's REPL.
def _vn_boot():
    import os
    import sys

    import vfs

    flash, port, cause, mode, uid = sys.argv[1:6]
    here = sys.argv[0].rsplit("/", 1)[0]
    sys.path.insert(0, here)
    import machine

    sys.path.pop(0)
    machine._init(int(port), int(cause), bytes.fromhex(uid))
    sys.modules["machine"] = machine

    class FlashBdev:
        # littlefs block device on a host file opened before the host FS is unmounted.
        def __init__(self, f, block_size):
            self.f = f
            self.bs = block_size
            f.seek(0, 2)
            self.n = f.tell() // block_size

        def readblocks(self, block, buf, off=0):
            self.f.seek(block * self.bs + off)
            self.f.readinto(buf)

        def writeblocks(self, block, buf, off=None):
            if off is None:
                off = 0
            self.f.seek(block * self.bs + off)
            self.f.write(buf)

        def ioctl(self, op, arg):
            if op == 4:
                return self.n
            if op == 5:
                return self.bs
            if op == 6:
                return 0
            if op == 3:
                self.f.flush()
                return 0
            return None

    bdev = FlashBdev(open(flash, "r+b"), 4096)
    try:
        fs = vfs.VfsLfs2(bdev)
    except OSError:
        # Format only an erased (0xFF) or zeroed image: never wipe a file given by mistake.
        head = bytearray(8192)
        bdev.readblocks(0, head)
        if head != b"\xff" * 8192 and any(head):
            raise OSError(
                "%s is neither a littlefs v2 image nor erased; not formatting it" % flash
            ) from None
        vfs.VfsLfs2.mkfs(bdev)
        fs = vfs.VfsLfs2(bdev)
    vfs.umount("/")
    vfs.mount(fs, "/")
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]
    sys.argv[:] = []
    return mode


def _vn_run(name):
    # Like pyexec_file_if_exists(): True unless the script raised; SystemExit propagates.
    import os
    import sys

    try:
        os.stat(name)
    except OSError:
        return True
    try:
        with open(name) as f:
            src = f.read()
        exec(src, globals())
    except SystemExit:
        raise
    except BaseException as e:
        sys.print_exception(e)
        return False
    return True


def _vn_atexit():
    # The Unix port exits for a soft reboot. Like gc_sweep_all() on the ESP32 port, drop
    # every object and run finalisers so files left open are flushed and closed.
    import gc
    import sys

    import vfs

    g = globals()
    for k in list(g):
        if k != "__name__":
            del g[k]
    for k in list(sys.modules):
        del sys.modules[k]
    gc.collect()
    try:
        vfs.umount("/")
    except OSError:
        pass


def _vn_probe_locks():
    # The Unix port raises a Ctrl-C's KeyboardInterrupt from its signal handler, which can
    # leave a C lock taken (the GC's, the qstr table's); the interpreter then hangs at its
    # next allocation. Take both locks here, before the REPL reads any input: a poisoned
    # interpreter hangs now and the supervisor restarts it with the client's input still
    # queued, instead of hanging after the REPL took a command (that command would be lost).
    import gc

    for _ in range(3):  # another Ctrl-C may land in the probe itself
        try:
            gc.collect()  # the GC lock
            hasattr(gc, "".join(("col", "lect")))  # a name made at run time: the qstr lock
            return
        except KeyboardInterrupt:
            pass


def _vn_main():
    # Markers (stripped by the supervisor): booting = setup done, Ctrl-C may interrupt from
    # now on; main = boot.py done; ready = the REPL follows; softreset = SystemExit in boot.py/main.py; failed =
    # the board could not be set up (the host FS must never be left mounted at /).
    import sys

    w = sys.stdout.write
    try:
        mode = _vn_boot()
    except BaseException as e:
        sys.print_exception(e)
        w("\x00\x1b[vnsim-failed]\x00")
        while True:
            pass
    end = "\x00\x1b[vnsim-ready]\x00"
    try:
        w("\x00\x1b[vnsim-booting]\x00")  # inside try: a Ctrl-C now still ends in "ready"
        ok = _vn_run("boot.py")
        w("\x00\x1b[vnsim-main]\x00")  # boot.py is done
        if ok and mode == "friendly":
            _vn_run("main.py")
    except SystemExit:
        end = "\x00\x1b[vnsim-softreset]\x00"
    finally:
        _vn_probe_locks()
        for _ in range(3):  # a late Ctrl-C must not swallow the marker
            try:
                w(end)
                break
            except KeyboardInterrupt:
                pass


__import__("sys").atexit(_vn_atexit)
_vn_main()
del _vn_boot, _vn_run, _vn_probe_locks, _vn_main, _vn_atexit
