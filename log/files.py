"""The file layer under the log: segment files and small metadata files, on disk or in memory.

Two implementations with one interface, so that `--memory` runs the very same PartitionLog and
LogManager code:

* `DiskFiles(root)`: real files under a data directory. Appends are one unbuffered `os.write` on
  an O_APPEND descriptor: once `append` returns, the bytes are in the kernel's page cache and
  survive the broker process being killed (SIGKILL). Only `flush()` (fsync) protects them from a
  machine crash; Kafka likewise relies on the page cache and flushes on its own schedule
  (`log.flush.interval.*` default to never; the recovery point records what was flushed).
* `MemoryFiles()`: bytearrays in a dict. Nothing survives the process. It counts the flushes
  asked of it (`flushes`, by path) and can run a hook at each (`on_flush`), so tests see when
  and from where the log flushes without touching a disk.

Flushes run in worker threads (the broker's flusher and checkpoint tasks, the produce requests
that wait for `flush.messages`): the event loop takes a `duplicate()` of each file to flush (and
`open_directory` for the partition dir), so a segment rolled, deleted or closed meanwhile is
safe, and the thread calls only `flush()` and `close()` on those handles. A failure there is
reported to the same failure channel as any other.

Paths are relative to the root and use '/' (e.g. "orders-0/00000000000000000000.log").

A failed disk operation takes the whole data dir offline, as Kafka's LogDirFailureChannel does:
every OSError of a DiskFiles or of a file it opened (ENOSPC, EFBIG, EMFILE, EIO, EACCES, ...) is
reported to its `failure_channel` and raised as KafkaError(KAFKA_STORAGE_ERROR), and from then on
every operation on the dir is refused the same way, so nothing more is written there (no append
can reuse the offsets of a batch half-recorded before the failure) until the broker restarts and
recovers the dir. The check sits here, under every caller, so that no write path can forget it.
A FileNotFoundError that answers "is it there?" (`read_small`, `size_of`) is not a failure.
"""

import collections
import ctypes
import errno
import logging
import os
import shutil
import stat
import threading

from trioka.wire.errors import ErrorCode, KafkaError


def _load_syncfs():
    """libc's syncfs(2) (Linux), or None where there is none."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        return None
    syncfs.argtypes = [ctypes.c_int]
    syncfs.restype = ctypes.c_int
    return syncfs


_syncfs = _load_syncfs()

log = logging.getLogger("trioka.log")


class LogDirFailureChannel:
    """Kafka's LogDirFailureChannel for this broker's one log dir: the first I/O error reported
    takes the dir offline, and it stays offline until the broker restarts. The partitions of an
    offline dir answer KAFKA_STORAGE_ERROR; the broker itself stays up and keeps serving every
    other request. Worker threads (flushes, checkpoint writes) report here too, so the first
    failure is recorded under a lock, as Kafka's channel is a concurrent queue.

    (Kafka halts a broker whose every log dir has failed; a single-node trioka keeps answering
    Metadata and the coordinators' requests instead, so clients see the error, not a dead node.)
    """

    def __init__(self, log_dir: str):
        self.log_dir = log_dir
        self.failure: str | None = None   # what failed first; None while the dir is online
        self._lock = threading.Lock()

    @property
    def offline(self) -> bool:
        return self.failure is not None

    def maybe_add_offline_log_dir(self, message: str, exc: OSError) -> KafkaError:
        """Report an I/O error `message` (Kafka's "Error while ... in dir ..."); the first one
        takes the dir offline. Returns the KafkaError for the caller to raise."""
        log.error("%s: %s", message, exc)
        with self._lock:
            first = self.failure is None
            if first:
                self.failure = f"{message}: {exc}"
        if first:
            log.warning("Stopping serving logs in dir %s: the log directory has failed; its "
                        "partitions are offline until the broker restarts", self.log_dir)
        return self.storage_error()

    def storage_error(self) -> KafkaError:
        return KafkaError(ErrorCode.KAFKA_STORAGE_ERROR,
                          f"Log directory {self.log_dir} is offline ({self.failure})")

    def check(self) -> None:
        """KafkaError(KAFKA_STORAGE_ERROR) if the dir is offline."""
        if self.failure is not None:
            raise self.storage_error()


class SharedDescriptor:
    """One duplicate of a segment file's descriptor, shared by every FileRegion of that file
    that is waiting to be sent, and closed when the last of them is.

    A region needs a descriptor of its own: retention or the log cleaner may close (and the
    kernel reuse the number of) the segment's descriptor before the response is written. One
    duplicate per file rather than per region keeps the descriptors a broker holds bounded by
    its segment files, whatever the number of fetches waiting to be sent: a client that never
    reads its socket holds one response, and its regions share the descriptors every other
    fetch of those segments uses. (Kafka's FileRecords slices share the segment's FileChannel
    the same way.)

    `by_source` maps an open segment descriptor to its shared duplicate; DiskFile.close forgets
    the entry (`source_closed`), so a number the kernel reuses never finds a stale duplicate."""
    __slots__ = ("source", "fd", "users")

    by_source: dict[int, "SharedDescriptor"] = {}

    def __init__(self, source: int):
        self.source = source
        self.fd = os.dup(source)
        self.users = 0

    @classmethod
    def acquire(cls, source: int) -> "SharedDescriptor":
        """The shared duplicate of the open descriptor `source`, with one more user."""
        shared = cls.by_source.get(source)
        if shared is None:
            shared = cls.by_source[source] = cls(source)
        shared.users += 1
        return shared

    def release(self) -> None:
        """One user fewer; the duplicate is closed with its last user."""
        self.users -= 1
        if self.users <= 0:
            if self.by_source.get(self.source) is self:
                del self.by_source[self.source]
            os.close(self.fd)
            self.fd = -1

    @classmethod
    def source_closed(cls, source: int) -> None:
        """The segment descriptor `source` is being closed: later regions of a file opened under
        the same number get a new duplicate (regions already made keep theirs)."""
        cls.by_source.pop(source, None)


class FileRegion:
    """A byte range of a segment file, sent to a socket with `os.sendfile` instead of being read
    into memory: how a Fetch response carries stored batches from a disk log (Kafka's zero-copy
    transfer). It reads through the file's SharedDescriptor, so the range stays readable even if
    retention deletes or compaction replaces the file before the response is sent. `close()`
    (the server calls it once the region is sent or given up) lets go of the descriptor.
    """
    __slots__ = ("shared", "offset", "length")

    def __init__(self, fd: int, offset: int, length: int):
        self.shared = None
        self.shared = SharedDescriptor.acquire(fd)
        self.offset = offset
        self.length = length

    @property
    def fd(self) -> int:
        """The descriptor to sendfile from; -1 once closed."""
        return self.shared.fd if self.shared is not None else -1

    def __len__(self) -> int:
        return self.length

    def read(self) -> bytes:
        """The bytes themselves (for callers that cannot use sendfile)."""
        return os.pread(self.fd, self.length, self.offset)

    def close(self) -> None:
        shared, self.shared = self.shared, None
        if shared is not None:
            shared.release()

    def __del__(self):
        self.close()


class DiskFile:
    """One open file of a segment (`.log`, `.index`, `.timeindex`). Every operation but
    `fileno` and `close` is refused once the dir is offline, and an OSError takes it offline
    (see the module docstring). `fd`: adopt an open descriptor (a duplicate, a directory)
    instead of opening `path`."""

    def __init__(self, path: str, failure_channel: LogDirFailureChannel, *,
                 fd: int | None = None):
        self.path = path
        self.failure_channel = failure_channel
        if fd is None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._fd = fd
        try:
            status = os.fstat(self._fd)
        except OSError:
            os.close(self._fd)
            raise
        self.size = status.st_size
        self.is_directory = stat.S_ISDIR(status.st_mode)

    def _failed(self, action: str, exc: OSError) -> KafkaError:
        return self.failure_channel.maybe_add_offline_log_dir(
            f"Error while {action} {self.path}", exc)

    def append(self, data) -> int:
        """Write all of data at the end of the file; return the position it starts at."""
        self.check_writable()
        position = self.size
        return self.appended(position, data, *self.write_at_end(data))

    def check_writable(self) -> None:
        """KAFKA_STORAGE_ERROR once the dir is offline: nothing more is written to it."""
        self.failure_channel.check()

    def write_at_end(self, data) -> tuple[int, OSError | None]:
        """The write itself, and nothing else: safe in a worker thread while the event loop
        goes on, as long as nothing else writes to this file meanwhile (the partition's
        appends are one at a time). Returns the bytes written and the error that stopped it;
        `appended` (on the loop) does the bookkeeping."""
        view = memoryview(data)
        length = len(view)
        written = 0
        try:
            while written < length:
                written += os.write(self._fd, view[written:])
        except OSError as exc:
            return written, exc
        finally:
            view.release()
        return written, None

    def appended(self, position: int, data, written: int, error: OSError | None) -> int:
        """After `write_at_end` wrote `data` from `position`: the file's new size, or for a
        failed write the partial bytes dropped and the log dir taken offline."""
        if error is not None:
            # Keep the file whole-batch: drop a partial write (ENOSPC, EFBIG after a short
            # write) before reporting. If even that fails, recovery cuts the torn tail.
            if written:
                try:
                    os.ftruncate(self._fd, position)
                except OSError:
                    pass
            raise self._failed("appending to", error) from error
        self.size = position + len(data)
        return position

    def pread(self, position: int, length: int) -> bytes:
        """Up to `length` bytes from `position` (fewer only at the end of the file)."""
        if length <= 0:
            return b""
        # Reads go on when the dir is offline (a full disk stops writes, not reads); a read
        # that fails itself reports the failure as any I/O error does.
        try:
            data = os.pread(self._fd, length, position)
            if len(data) < length and position + len(data) < self.size:
                # A regular file returns short reads only at EOF; loop in case of a signal.
                parts = [data]
                got = len(data)
                while got < length:
                    more = os.pread(self._fd, length - got, position + got)
                    if not more:
                        break
                    parts.append(more)
                    got += len(more)
                data = b"".join(parts)
        except OSError as exc:
            raise self._failed("reading", exc) from exc
        return data

    def truncate(self, size: int) -> None:
        self.failure_channel.check()
        try:
            os.ftruncate(self._fd, size)
        except OSError as exc:
            raise self._failed("truncating", exc) from exc
        self.size = size

    def flush(self) -> None:
        """fsync: make the file's contents survive a machine crash (for a directory: the names
        created or renamed in it). File systems that cannot fsync a directory (EINVAL) are let
        be, as in `write_atomic`."""
        self.failure_channel.check()
        try:
            os.fsync(self._fd)
        except OSError as exc:
            if self.is_directory and exc.errno == errno.EINVAL:
                return
            raise self._failed("flushing", exc) from exc

    def duplicate(self) -> "DiskFile":
        """Another handle on the same open file (`os.dup`), to be flushed and closed by a worker
        thread: it stays valid whatever happens to this one (closed at a roll, deleted by
        retention), and fsync through it covers everything written through this one."""
        self.failure_channel.check()
        try:
            fd = os.dup(self._fd)
        except OSError as exc:
            raise self._failed("duplicating the descriptor of", exc) from exc
        return DiskFile(self.path, self.failure_channel, fd=fd)

    def fileno(self) -> int | None:
        """The descriptor, for `os.sendfile` from the server. Valid until `close()`."""
        return self._fd

    def close(self) -> None:
        """Close the descriptor (allowed on an offline dir: it releases, it writes nothing)."""
        if self._fd >= 0:
            SharedDescriptor.source_closed(self._fd)   # file regions keep their duplicate
            os.close(self._fd)
            self._fd = -1

    @property
    def closed(self) -> bool:
        return self._fd < 0


class DiskFiles:
    """Files under the directory `root` (created if missing). `failure_channel` is the dir's
    LogDirFailureChannel (a new one by default)."""

    def __init__(self, root: str, *, failure_channel: LogDirFailureChannel | None = None):
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self.failure_channel = failure_channel or LogDirFailureChannel(self.root)
        self._lock_fd = -1
        self.stalling_until = 0.0        # see note_write
        self._rate_window = (0.0, 0)     # (start, bytes written since) of the current second
        self._last_rate = 0.0            # bytes a second written in the previous window

    # A write() into the page cache is normally a copy (0.2-0.3 ms a MB), but a disk under
    # writeback can hold one for 100 ms and more: once the dirty pages pass the kernel's limit,
    # write() sleeps until writeback catches up (balance_dirty_pages), and with little free
    # memory it reclaims pages itself first. Appends write on the event loop, where the copy is
    # cheapest, while neither is likely; large appends write from a worker thread
    # (PartitionLog.begin_append), so the event loop does not wait on the disk:
    # - for WRITE_STALL_HOLD_S after a write that took longer than WRITE_STALL_S;
    # - while the dir takes more than HEAVY_WRITE_BYTES_PER_S (the previous second's rate or the
    #   current one's so far), faster than disks commonly write back, so that dirty pages pile
    #   up and the first stall is near (measured: one write of 120-225 ms in each 10 KB
    #   produce phase of the benchmark, at 500-900 MB/s, before the hold took over). At the
    #   100 B produce phases' 100-170 MB/s writes stay on the loop, where a thread's copy would
    #   cost some 18% more broker CPU.
    WRITE_STALL_S = 0.010
    WRITE_STALL_HOLD_S = 60.0
    HEAVY_WRITE_BYTES_PER_S = 200 * 1024 * 1024

    def note_write(self, seconds: float, now: float, size: int = 0) -> None:
        """A segment write of `size` bytes took `seconds` (at `now`, time.perf_counter's: the
        disk's real time, also under virtual time)."""
        if seconds > self.WRITE_STALL_S:
            if self.stalling_until <= now:
                log.info("A write to %s took %.0f ms: large appends write from a worker thread "
                         "for the next %.0f s", self.root, seconds * 1000,
                         self.WRITE_STALL_HOLD_S)
            self.stalling_until = now + self.WRITE_STALL_HOLD_S
        start, written = self._rate_window
        if now - start >= 1.0:
            self._last_rate = written / (now - start) if now - start < 2.0 else 0.0
            self._rate_window = (now, size)
        else:
            self._rate_window = (start, written + size)

    def writes_stall(self, now: float) -> bool:
        """Whether writes to this dir have been slow lately or are heavy now (see
        note_write)."""
        if self.stalling_until > now:
            return True
        start, written = self._rate_window
        if now - start >= 2.0:
            return False            # nothing written for a second and more
        return self._last_rate > self.HEAVY_WRITE_BYTES_PER_S or \
            written > self.HEAVY_WRITE_BYTES_PER_S

    # One syncfs(2) makes everything written to the dir's file system durable, with one journal
    # commit: the checkpoint's sweep over every log written since its last flush uses it
    # instead of an fsync a log (10,000 written partitions: 6.9 s and 3.7 CPU-seconds of fsyncs
    # and thread hand-offs; measured in tests/test_log_flush.py's sweep test).
    syncs_file_system = hasattr(os, "O_DIRECTORY") and _syncfs is not None

    def sync_filesystem(self) -> None:
        """syncfs(2) on the file system holding the dir, for a worker thread: everything written
        to it before the call is durable when it returns (Linux reports the writeback errors
        since the last syncfs, 5.8 and later). A failure takes the dir offline."""
        def sync() -> None:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                if _syncfs(fd) != 0:
                    code = ctypes.get_errno()
                    raise OSError(code, os.strerror(code))
            finally:
                os.close(fd)
        self._do("syncing the file system of", "", sync)

    def _abs(self, path: str) -> str:
        return os.path.join(self.root, path) if path else self.root

    def _do(self, action: str, path: str, operation, *args):
        """`operation(*args)` on the dir: refused when it is offline; an OSError takes it
        offline (Kafka's maybeHandleIOException)."""
        channel = self.failure_channel
        if channel.failure is not None:
            raise channel.storage_error()
        try:
            return operation(*args)
        except OSError as exc:
            raise channel.maybe_add_offline_log_dir(
                f"Error while {action} {self._abs(path)} in dir {self.root}", exc) from exc

    def open(self, path: str) -> DiskFile:
        """Open (creating if needed) a file for appends and positional reads."""
        return self._do("opening", path, DiskFile, self._abs(path), self.failure_channel)

    def exists(self, path: str) -> bool:
        self.failure_channel.check()
        return os.path.exists(self._abs(path))

    def is_dir(self, path: str) -> bool:
        self.failure_channel.check()
        return os.path.isdir(self._abs(path))

    def size_of(self, path: str) -> int:
        self.failure_channel.check()
        try:
            return os.path.getsize(self._abs(path))
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise self.failure_channel.maybe_add_offline_log_dir(
                f"Error while reading the size of {self._abs(path)}", exc) from exc

    def listdir(self, path: str = "") -> list[str]:
        return self._do("listing", path, os.listdir, self._abs(path))

    def mkdir(self, path: str) -> None:
        self._do("creating", path, os.makedirs, self._abs(path), 0o777, True)

    def open_directory(self, path: str = "") -> DiskFile:
        """A handle on a directory, to `flush()` (fsync) the names created in it, e.g. a
        partition dir's new segment files (Kafka's Utils.flushDir). Opened here, so that a
        worker thread can flush it even if the dir is renamed meanwhile (a topic deletion)."""
        return self._do("opening", path, self._open_directory, self._abs(path))

    def _open_directory(self, path: str) -> DiskFile:
        return DiskFile(path, self.failure_channel,
                        fd=os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))

    def rename(self, source: str, target: str) -> None:
        self._do("renaming", source, os.rename, self._abs(source), self._abs(target))

    def remove(self, path: str) -> None:
        self._do("deleting", path, self._remove, self._abs(path))

    @staticmethod
    def _remove(path: str) -> None:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass

    def remove_tree(self, path: str) -> None:
        self.failure_channel.check()
        shutil.rmtree(self._abs(path), ignore_errors=True)

    def read_small(self, path: str) -> bytes:
        """The whole content of a small file; FileNotFoundError if it does not exist."""
        self.failure_channel.check()
        try:
            with open(self._abs(path), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise self.failure_channel.maybe_add_offline_log_dir(
                f"Error while reading {self._abs(path)}", exc) from exc

    def write_atomic(self, path: str, data: bytes) -> None:
        """Replace a small file atomically: write `<path>.tmp`, fsync it, rename over `path`,
        fsync the directory. Readers see the old or the new content, never a mix (Kafka writes
        its checkpoint files this way). It blocks for two fsyncs: the broker calls it from a
        worker thread where that matters (the checkpoint files), one writer at a time per path
        (they share `<path>.tmp`)."""
        self._do("writing", path, self._write_atomic, self._abs(path), data)

    @classmethod
    def _write_atomic(cls, target: str, data: bytes) -> None:
        tmp = target + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            written = 0
            while written < len(view):
                written += os.write(fd, view[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        cls._fsync_dir(os.path.dirname(target))

    @staticmethod
    def _fsync_dir(directory: str) -> None:
        """fsync a directory, so a rename in it survives a machine crash. File systems that
        cannot fsync a directory (EINVAL) are let be; any other error is a failure."""
        fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
        finally:
            os.close(fd)

    def lock(self) -> bool:
        """Take Kafka's `.lock` on the data dir (an exclusive flock); False if another process
        holds it. Released by `unlock()` or when the process dies."""
        import fcntl

        fd = os.open(self._abs(".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


class MemoryFile:
    """A segment file held in a bytearray shared with its MemoryFiles (reopening sees the data).
    `owner`, that MemoryFiles, counts its flushes."""

    def __init__(self, path: str, data: bytearray, owner: "MemoryFiles | None" = None):
        self.path = path
        self._data = data
        self.owner = owner
        self.closed = False

    @property
    def size(self) -> int:
        return len(self._data)

    def check_writable(self) -> None:
        pass

    def append(self, data) -> int:
        position = len(self._data)
        self._data += data
        return position

    def write_at_end(self, data) -> tuple[int, OSError | None]:
        self._data += data
        return len(data), None

    def appended(self, position: int, data, written: int, error: OSError | None) -> int:
        return position

    def pread(self, position: int, length: int) -> bytes:
        # A copy: a view would pin the bytearray and forbid later appends.
        return bytes(self._data[position:position + length])

    def truncate(self, size: int) -> None:
        del self._data[size:]

    def flush(self) -> None:
        if self.owner is not None:
            self.owner.flushed(self.path)

    def duplicate(self) -> "MemoryFile":
        """Another handle on the same bytes (DiskFile.duplicate)."""
        return MemoryFile(self.path, self._data, self.owner)

    def fileno(self) -> int | None:
        return None

    def close(self) -> None:
        self.closed = True


class MemoryFiles:
    """The same interface as DiskFiles over a dict of bytearrays (`--memory` mode). Memory does
    not fail, so its failure channel never takes it offline.

    Flushes have nothing to do here, but they are counted: `flushes[path]` is how many times
    the file or directory `path` was flushed (from any thread), and `on_flush(path)`, if set,
    is called at each flush, in the thread doing it; tests use it to see a flush happen, or to
    make one slow. The names change under a lock, as the broker's worker threads (topic
    creation, checkpoint writes) use them too. Each directory's entries are indexed, so listing
    one costs its entries, not every file of the broker (10,000 partitions: a topic's creation
    lists each new partition's directory)."""

    def note_write(self, seconds: float, now: float, size: int = 0) -> None:
        pass

    def writes_stall(self, now: float) -> bool:
        return False      # memory never holds a write

    # No file system: the checkpoint flushes (and so counts) each log's files on its own.
    syncs_file_system = False

    def __init__(self):
        self.root = None
        self.failure_channel = LogDirFailureChannel("memory")
        self._files: dict[str, bytearray] = {}
        self._dirs: set[str] = {""}
        # directory -> its entries' names (files and directories), in the order they came
        self._entries: dict[str, dict[str, None]] = {"": {}}
        self._lock = threading.RLock()
        self.flushes: collections.Counter = collections.Counter()
        self.on_flush = None
        self._flush_lock = threading.Lock()

    def flushed(self, path: str) -> None:
        """Count one flush of `path` (a MemoryFile's or directory's), then run `on_flush`."""
        with self._flush_lock:
            self.flushes[path] += 1
        if self.on_flush is not None:
            self.on_flush(path)

    @staticmethod
    def _norm(path: str) -> str:
        return path.strip("/")

    @staticmethod
    def _parent(path: str) -> str:
        return path.rpartition("/")[0]

    def _require_parent(self, path: str) -> None:
        if self._parent(path) not in self._dirs:
            raise FileNotFoundError(errno.ENOENT, "no such directory", self._parent(path))

    def _add_entry(self, path: str) -> None:
        self._entries[self._parent(path)][path.rpartition("/")[2]] = None

    def _drop_entry(self, path: str) -> None:
        entries = self._entries.get(self._parent(path))
        if entries is not None:
            entries.pop(path.rpartition("/")[2], None)

    def _subtree(self, path: str) -> tuple[list[str], list[str]]:
        """(the directories, the files) at and under directory `path`, from the index."""
        dirs, files, todo = [], [], [path]
        while todo:
            d = todo.pop()
            dirs.append(d)
            for name in self._entries.get(d, ()):
                child = f"{d}/{name}" if d else name
                (todo if child in self._dirs else files).append(child)
        return dirs, files

    def open(self, path: str) -> MemoryFile:
        with self._lock:
            path = self._norm(path)
            data = self._files.get(path)
            if data is None:
                self._require_parent(path)
                data = self._files[path] = bytearray()
                self._add_entry(path)
            return MemoryFile(path, data, self)

    def open_directory(self, path: str = "") -> MemoryFile:
        """A handle whose flush() counts as a flush of the directory (DiskFiles.open_directory)."""
        path = self._norm(path)
        if path not in self._dirs:
            raise FileNotFoundError(errno.ENOENT, "no such directory", path)
        return MemoryFile(path, bytearray(), self)

    def exists(self, path: str) -> bool:
        path = self._norm(path)
        return path in self._files or path in self._dirs

    def is_dir(self, path: str) -> bool:
        return self._norm(path) in self._dirs

    def size_of(self, path: str) -> int:
        path = self._norm(path)
        if path not in self._files:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        return len(self._files[path])

    def listdir(self, path: str = "") -> list[str]:
        with self._lock:
            path = self._norm(path)
            if path not in self._dirs:
                raise FileNotFoundError(errno.ENOENT, "no such directory", path)
            return list(self._entries[path])

    def mkdir(self, path: str) -> None:
        with self._lock:
            path = self._norm(path)
            made = []
            while path and path not in self._dirs:
                self._dirs.add(path)
                self._entries[path] = {}
                made.append(path)
                path = self._parent(path)
            for d in reversed(made):        # parents first: each one's entry goes in its parent
                self._add_entry(d)

    def rename(self, source: str, target: str) -> None:
        with self._lock:
            source, target = self._norm(source), self._norm(target)
            if source in self._files:
                self._require_parent(target)
                if target not in self._files:
                    self._add_entry(target)
                self._files[target] = self._files.pop(source)
                self._drop_entry(source)
                return
            if source not in self._dirs:
                raise FileNotFoundError(errno.ENOENT, "no such file", source)
            dirs, files = self._subtree(source)
            for old in dirs:
                self._dirs.remove(old)
                self._dirs.add(target + old[len(source):])
                self._entries[target + old[len(source):]] = self._entries.pop(old)
            for old in files:
                self._files[target + old[len(source):]] = self._files.pop(old)
            self._drop_entry(source)
            self._add_entry(target)

    def remove(self, path: str) -> None:
        with self._lock:
            path = self._norm(path)
            if self._files.pop(path, None) is not None:
                self._drop_entry(path)

    def remove_tree(self, path: str) -> None:
        with self._lock:
            path = self._norm(path)
            if path not in self._dirs:
                return
            dirs, files = self._subtree(path)
            for name in files:
                del self._files[name]
            for d in dirs:
                self._dirs.discard(d)
                self._entries.pop(d, None)
            if path:
                self._drop_entry(path)
            else:       # the root itself: emptied, not gone
                self._dirs.add("")
                self._entries[""] = {}

    def read_small(self, path: str) -> bytes:
        path = self._norm(path)
        if path not in self._files:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        return bytes(self._files[path])

    def write_atomic(self, path: str, data: bytes) -> None:
        with self._lock:
            path = self._norm(path)
            self._require_parent(path)
            if path not in self._files:
                self._add_entry(path)
            # A new bytearray: handles opened on the old content keep the old content.
            self._files[path] = bytearray(data)

    def lock(self) -> bool:
        return True

    def unlock(self) -> None:
        pass
