"""The file layer under the log: segment files and small metadata files, on disk or in memory.

Two implementations with one interface, so that `--memory` runs the very same PartitionLog and
LogManager code:

* `DiskFiles(root)`: real files under a data directory. Appends are one unbuffered `os.write` on
  an O_APPEND descriptor: once `append` returns, the bytes are in the kernel's page cache and
  survive the broker process being killed (SIGKILL). Only `flush()` (fsync) protects them from a
  machine crash; Kafka likewise relies on the page cache and flushes on its own schedule
  (`log.flush.interval.*` default to never; the recovery point records what was flushed).
* `MemoryFiles()`: bytearrays in a dict. Nothing survives the process.

Paths are relative to the root and use '/' (e.g. "orders-0/00000000000000000000.log").
"""

import errno
import os
import shutil


class FileRegion:
    """A byte range of a segment file, sent to a socket with `os.sendfile` instead of being read
    into memory: how a Fetch response carries stored batches from a disk log (Kafka's zero-copy
    transfer). It holds its own duplicate of the file descriptor, so the range stays readable
    even if retention deletes or compaction replaces the file before the response is sent.
    """
    __slots__ = ("fd", "offset", "length")

    def __init__(self, fd: int, offset: int, length: int):
        self.fd = os.dup(fd)
        self.offset = offset
        self.length = length

    def __len__(self) -> int:
        return self.length

    def read(self) -> bytes:
        """The bytes themselves (for callers that cannot use sendfile)."""
        return os.pread(self.fd, self.length, self.offset)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self):
        self.close()


class DiskFile:
    """One open file of a segment (`.log`, `.index`, `.timeindex`)."""

    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self.size = os.fstat(self._fd).st_size

    def append(self, data) -> int:
        """Write all of data at the end of the file; return the position it starts at."""
        position = self.size
        view = memoryview(data)
        length = len(view)
        written = 0
        try:
            while written < length:
                written += os.write(self._fd, view[written:])
        except OSError:
            # Keep the file whole-batch: drop a partial write (e.g. ENOSPC) before reporting.
            if written:
                os.ftruncate(self._fd, position)
            raise
        finally:
            view.release()
        self.size = position + length
        return position

    def pread(self, position: int, length: int) -> bytes:
        """Up to `length` bytes from `position` (fewer only at the end of the file)."""
        if length <= 0:
            return b""
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
        return data

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        self.size = size

    def flush(self) -> None:
        """fsync: make the file's contents survive a machine crash."""
        os.fsync(self._fd)

    def fileno(self) -> int | None:
        """The descriptor, for `os.sendfile` from the server. Valid until `close()`."""
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def closed(self) -> bool:
        return self._fd < 0


class DiskFiles:
    """Files under the directory `root` (created if missing)."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self._lock_fd = -1

    def _abs(self, path: str) -> str:
        return os.path.join(self.root, path) if path else self.root

    def open(self, path: str) -> DiskFile:
        """Open (creating if needed) a file for appends and positional reads."""
        return DiskFile(self._abs(path))

    def exists(self, path: str) -> bool:
        return os.path.exists(self._abs(path))

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(self._abs(path))

    def size_of(self, path: str) -> int:
        return os.path.getsize(self._abs(path))

    def listdir(self, path: str = "") -> list[str]:
        return os.listdir(self._abs(path))

    def mkdir(self, path: str) -> None:
        os.makedirs(self._abs(path), exist_ok=True)

    def rename(self, source: str, target: str) -> None:
        os.rename(self._abs(source), self._abs(target))

    def remove(self, path: str) -> None:
        try:
            os.remove(self._abs(path))
        except FileNotFoundError:
            pass

    def remove_tree(self, path: str) -> None:
        shutil.rmtree(self._abs(path), ignore_errors=True)

    def read_small(self, path: str) -> bytes:
        """The whole content of a small file; FileNotFoundError if it does not exist."""
        with open(self._abs(path), "rb") as f:
            return f.read()

    def write_atomic(self, path: str, data: bytes) -> None:
        """Replace a small file atomically: write `<path>.tmp`, fsync it, rename over `path`,
        fsync the directory. Readers see the old or the new content, never a mix (Kafka writes
        its checkpoint files this way)."""
        target = self._abs(path)
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
        self._fsync_dir(os.path.dirname(target))

    def _fsync_dir(self, directory: str) -> None:
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
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
    """A segment file held in a bytearray shared with its MemoryFiles (reopening sees the data)."""

    def __init__(self, path: str, data: bytearray):
        self.path = path
        self._data = data
        self.closed = False

    @property
    def size(self) -> int:
        return len(self._data)

    def append(self, data) -> int:
        position = len(self._data)
        self._data += data
        return position

    def pread(self, position: int, length: int) -> bytes:
        # A copy: a view would pin the bytearray and forbid later appends.
        return bytes(self._data[position:position + length])

    def truncate(self, size: int) -> None:
        del self._data[size:]

    def flush(self) -> None:
        pass

    def fileno(self) -> int | None:
        return None

    def close(self) -> None:
        self.closed = True


class MemoryFiles:
    """The same interface as DiskFiles over a dict of bytearrays (`--memory` mode)."""

    def __init__(self):
        self.root = None
        self._files: dict[str, bytearray] = {}
        self._dirs: set[str] = {""}

    @staticmethod
    def _norm(path: str) -> str:
        return path.strip("/")

    @staticmethod
    def _parent(path: str) -> str:
        return path.rpartition("/")[0]

    def _require_parent(self, path: str) -> None:
        if self._parent(path) not in self._dirs:
            raise FileNotFoundError(errno.ENOENT, "no such directory", self._parent(path))

    def open(self, path: str) -> MemoryFile:
        path = self._norm(path)
        data = self._files.get(path)
        if data is None:
            self._require_parent(path)
            data = self._files[path] = bytearray()
        return MemoryFile(path, data)

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
        path = self._norm(path)
        if path not in self._dirs:
            raise FileNotFoundError(errno.ENOENT, "no such directory", path)
        names = [p.rpartition("/")[2] for p in self._files if self._parent(p) == path]
        names += [d.rpartition("/")[2] for d in self._dirs if d and self._parent(d) == path]
        return names

    def mkdir(self, path: str) -> None:
        path = self._norm(path)
        while path and path not in self._dirs:
            self._dirs.add(path)
            path = self._parent(path)

    def rename(self, source: str, target: str) -> None:
        source, target = self._norm(source), self._norm(target)
        if source in self._files:
            self._require_parent(target)
            self._files[target] = self._files.pop(source)
            return
        if source not in self._dirs:
            raise FileNotFoundError(errno.ENOENT, "no such file", source)
        prefix = source + "/"
        for old in [d for d in self._dirs if d == source or d.startswith(prefix)]:
            self._dirs.remove(old)
            self._dirs.add(target + old[len(source):])
        for old in [f for f in self._files if f.startswith(prefix)]:
            self._files[target + old[len(source):]] = self._files.pop(old)

    def remove(self, path: str) -> None:
        self._files.pop(self._norm(path), None)

    def remove_tree(self, path: str) -> None:
        path = self._norm(path)
        prefix = path + "/"
        for name in [f for f in self._files if f.startswith(prefix)]:
            del self._files[name]
        self._dirs -= {d for d in self._dirs if d == path or d.startswith(prefix)}

    def read_small(self, path: str) -> bytes:
        path = self._norm(path)
        if path not in self._files:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        return bytes(self._files[path])

    def write_atomic(self, path: str, data: bytes) -> None:
        path = self._norm(path)
        self._require_parent(path)
        # A new bytearray: handles opened on the old content keep the old content.
        self._files[path] = bytearray(data)

    def lock(self) -> bool:
        return True

    def unlock(self) -> None:
        pass
