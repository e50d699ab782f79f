"""CPU time and resident memory of a process and its descendants, from /proc."""
import os

TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    """Fields of /proc/PID/stat after the command name, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # The command name may hold spaces or parentheses: split after the last ')'.
    return text[text.rindex(")") + 2:].split()


def _parents():
    """Map pid -> parent pid for every process visible now."""
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields:
            parents[int(name)] = int(fields[1])
    return parents


def tree(pid):
    """pid and all its live descendants (Dante forks helper processes)."""
    children = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def cpu_seconds(pid):
    """utime+stime of the tree, plus the times of children already reaped
    (cutime+cstime), so helpers that exit during a run are still counted.
    Threads are included: the process line sums all its threads."""
    ticks = 0
    for p in tree(pid):
        fields = _stat_fields(p)
        if fields:
            ticks += sum(int(v) for v in fields[11:15])
    return ticks / TICK


def _sum_field(pid, filename, field):
    """A kB field summed over the tree; processes that vanish count 0."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/{filename}") as f:
                for line in f:
                    if line.startswith(field):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def rss_kb(pid):
    """VmRSS summed over the tree, in kB. Pages shared between forked
    processes are counted once per process, as VmRSS does."""
    return _sum_field(pid, "status", "VmRSS:")


def pss_kb(pid):
    """Proportional set size summed over the tree, in kB: shared pages are
    split between the processes sharing them, so forked servers are not
    charged several times for one page."""
    return _sum_field(pid, "smaps_rollup", "Pss:")


def count(pid):
    """Number of processes in the tree."""
    return len(tree(pid))


def kworker_seconds():
    """utime+stime of every kernel worker thread: work the kernel queues
    (a sockmap redirect's send to the destination socket) runs there, on
    no process's account. Machine-wide, so other load counts too."""
    ticks = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                text = f.read()
        except OSError:
            continue
        if "(kworker" in text:
            ticks += sum(int(v) for v in text[text.rindex(")") + 2:].split()[11:13])
    return ticks / TICK
