/* The monitor of a dyno, as podman's conmon is for its containers: one small process per
 * dyno, in a session of its own, that outlives the agent which started it.
 *
 * It becomes a child subreaper, runs `runc run --detach` with the container's stdout and
 * stderr on a pipe (runc's pass-through stdio: the container's init inherits the pipe, and
 * runc exits once the container runs), reaps the container's init once it is re-parented
 * here, and copies the pipe into the dyno's log with the bounds of paas/runtime/dynolog.py's
 * LogWriter (the same file format: at most UNSHIPPED_MAX_BYTES not yet shipped by the agent,
 * the rest dropped and counted in a NUL-prefixed marker line). Once the last output is in the
 * log it writes the exit status (as a shell reports it: 128 + N for a signal) to exit-code.
 *
 * The dyno directory is root's and no dyno reaches it; still, every file is opened relative
 * to the directory's fd with O_NOFOLLOW, and files are replaced by rename, as paas/safefs.py
 * does.
 *
 * Usage (by Runtime): paas-dyno-monitor DYNO_DIR RUNC ROOT UNSHIPPED_MAX_BYTES
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define READ_SIZE (64 * 1024)
#define MARKER_ROOM 64
#define QUIET_MS 1000
#define METADATA_LIMIT (1024 * 1024)
#define LOST 255 /* the container's end could not be observed (paas/terminals.py) */

/* What takes the place of dropped output, followed by their count and a newline. */
static const char DROPPED[] = "\0paas:dropped ";
#define DROPPED_LEN (sizeof(DROPPED) - 1)
static const char NUL_STAND_IN[] = "\xef\xbf\xbd"; /* U+FFFD: no dyno writes a marker */
#define STAND_IN_LEN (sizeof(NUL_STAND_IN) - 1)

static int dir_fd = -1;
static char read_buf[READ_SIZE];
static char data_buf[READ_SIZE * STAND_IN_LEN];

/* ---- root's own files in the dyno directory ------------------------------------------- */

static int write_atomic(const char *name, const char *data, size_t size, mode_t mode) {
    unsigned char random[8];
    char tmp[128];
    if (getrandom(random, sizeof random, 0) != sizeof random)
        return -1;
    int used = snprintf(tmp, sizeof tmp, ".%s.", name);
    for (size_t i = 0; i < sizeof random; i++)
        used += snprintf(tmp + used, sizeof tmp - used, "%02x", random[i]);
    snprintf(tmp + used, sizeof tmp - used, ".tmp");
    int fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    int ok = fchmod(fd, mode) == 0;
    while (ok && size > 0) {
        ssize_t count = write(fd, data, size);
        if (count < 0 && errno == EINTR)
            continue;
        ok = count > 0;
        data += ok ? count : 0;
        size -= ok ? (size_t)count : 0;
    }
    ok = close(fd) == 0 && ok;
    if (ok && renameat(dir_fd, tmp, dir_fd, name) == 0)
        return 0;
    unlinkat(dir_fd, tmp, 0);
    return -1;
}

/* A small file's content (NUL-terminated); -1 if missing, a link, special or too large. */
static ssize_t read_small(const char *name, char *buf, size_t size) {
    int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    ssize_t total = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= METADATA_LIMIT) {
        total = 0;
        ssize_t count;
        while ((size_t)total < size - 1 &&
               (count = read(fd, buf + total, size - 1 - total)) != 0) {
            if (count < 0 && errno == EINTR)
                continue;
            if (count < 0) {
                total = -1;
                break;
            }
            total += count;
        }
    }
    close(fd);
    if (total >= 0)
        buf[total] = '\0';
    return total;
}

/* One whole decimal word at *text (after blanks); 0 with *ok cleared if it is not one. */
static int64_t word(const char **text, int *ok) {
    const char *start = *text + strspn(*text, " \t\n\r\f\v");
    char *end;
    errno = 0;
    long long value = strtoll(start, &end, 10);
    if (end == start || errno != 0 || (*end != '\0' && !strchr(" \t\n\r\f\v", *end)))
        *ok = 0;
    *text = end;
    return value;
}

/* `shipped`: the offset the agent shipped to, and the bytes it cut off the log's head
 * (both 0 when missing or unreadable, as DynoLog._shipped). */
static void read_shipped(int64_t *offset, int64_t *cut) {
    char text[128];
    *offset = *cut = 0;
    if (read_small("shipped", text, sizeof text) <= 0)
        return;
    const char *rest = text;
    int ok = 1;
    int64_t first = word(&rest, &ok);
    int64_t second = rest[strspn(rest, " \t\n\r\f\v")] ? word(&rest, &ok) : 0;
    if (ok) {
        *offset = first;
        *cut = second;
    }
}

static int64_t shipped_total(void) {
    int64_t offset, cut;
    read_shipped(&offset, &cut);
    return offset + cut;
}

/* ---- the bounded writer (dynolog.LogWriter) -------------------------------------------- */

struct writer {
    int fd;
    int64_t limit;
    int64_t written; /* every byte ever appended, those the agent cut off included */
    int64_t shipped; /* as last read: it only grows */
    int64_t dropped;
    int line_open; /* the last byte written was not a newline */
};

static int writer_open(struct writer *w, int64_t limit) {
    int64_t offset, cut;
    struct stat st;
    w->fd = openat(dir_fd, "output.log",
                   O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (w->fd < 0 || fstat(w->fd, &st) != 0)
        return -1;
    read_shipped(&offset, &cut);
    /* At least one read and its marker, or nothing would ever fit. */
    w->limit = limit > READ_SIZE + MARKER_ROOM ? limit : READ_SIZE + MARKER_ROOM;
    w->written = st.st_size + cut;
    w->shipped = offset + cut;
    w->dropped = 0;
    w->line_open = 0;
    return 0;
}

static int fits(struct writer *w, int64_t size) {
    if (w->written - w->shipped + size <= w->limit)
        return 1;
    w->shipped = shipped_total();
    return w->written - w->shipped + size <= w->limit;
}

/* Appends all of data; what the host refuses (a full disk) is dropped, and counted. */
static int append(struct writer *w, const char *data, size_t size) {
    while (size > 0) {
        ssize_t count = write(w->fd, data, size);
        if (count < 0 && errno == EINTR)
            continue;
        if (count <= 0) {
            w->dropped += size;
            return 0;
        }
        w->written += count;
        w->line_open = data[count - 1] != '\n';
        data += count;
        size -= count;
    }
    return 1;
}

static void mark(struct writer *w) {
    char marker[MARKER_ROOM];
    size_t size = 0;
    if (w->line_open)
        marker[size++] = '\n';
    memcpy(marker + size, DROPPED, DROPPED_LEN);
    size += DROPPED_LEN;
    size += snprintf(marker + size, sizeof marker - size, "%" PRId64 "\n", w->dropped);
    int64_t dropped = w->dropped;
    w->dropped = 0;
    if (!append(w, marker, size))
        w->dropped += dropped;
}

static void writer_write(struct writer *w, const char *chunk, size_t size) {
    size_t length = 0;
    for (size_t i = 0; i < size; i++) {
        if (chunk[i] == '\0') {
            memcpy(data_buf + length, NUL_STAND_IN, STAND_IN_LEN);
            length += STAND_IN_LEN;
        } else {
            data_buf[length++] = chunk[i];
        }
    }
    if (w->dropped && fits(w, length + MARKER_ROOM))
        mark(w);
    if (w->dropped || !fits(w, length)) {
        w->dropped += length;
        return;
    }
    append(w, data_buf, length);
}

/* Nothing came for a while: the dropped count, if there is room for it now. */
static void writer_quiet(struct writer *w) {
    if (w->dropped && fits(w, MARKER_ROOM))
        mark(w);
}

static void writer_close(struct writer *w) {
    if (w->dropped)
        mark(w);
    close(w->fd);
}

/* ---- runc and the container's init ---------------------------------------------------- */

struct children {
    pid_t runc;
    int runc_status;
    int runc_done;
    pid_t init; /* 0 until runc has started the container and written its pid */
    int init_status;
    int init_done;
};

static pid_t start_runc(char **argv, const char *dir, const char *id, int output) {
    char pid_file[4096];
    snprintf(pid_file, sizeof pid_file, "%s/init.pid", dir);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* The container gets the default dispositions, not the monitor's. */
    signal(SIGHUP, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(output, 1) < 0 || dup2(output, 2) < 0)
        _exit(127);
    /* --keep: the exited container (and its cgroup, with its OOM-kill count) stays until
     * removed. */
    char *args[] = {argv[2], "--root", argv[3], "run", "--detach", "--keep", "--pid-file",
                    pid_file, "--bundle", (char *)dir, (char *)id, NULL};
    execv(argv[2], args);
    fprintf(stderr, "paas-dyno-monitor: cannot run %s: %s\n", argv[2], strerror(errno));
    _exit(127);
}

static void read_init_pid(struct children *c) {
    char text[32];
    if (read_small("init.pid", text, sizeof text) > 0)
        c->init = (pid_t)atoi(text);
}

/* Reaps what exited (WNOHANG) or waits for the next to; -1 once no child is left. */
static int reap(struct children *c, int flags) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, flags)) > 0) {
        if (pid == c->runc) {
            c->runc_status = status;
            c->runc_done = 1;
            /* Before the next wait: the init, re-parented here now, may be gone already. */
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                read_init_pid(c);
        } else if (c->init > 0 && pid == c->init) {
            c->init_status = status;
            c->init_done = 1;
        }
        if (flags == 0)
            return 0;
    }
    return pid < 0 && errno == ECHILD ? -1 : 0;
}

static int shell_status(int status) {
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* The container's output to its log, until every writer of the pipe is gone. */
static void pump(int source, struct writer *w, struct children *c) {
    struct pollfd ready = {.fd = source, .events = POLLIN};
    for (;;) {
        int events = poll(&ready, 1, QUIET_MS);
        reap(c, WNOHANG);
        if (events < 0 && errno == EINTR)
            continue;
        if (events == 0) {
            writer_quiet(w);
            continue;
        }
        ssize_t count = read(source, read_buf, sizeof read_buf);
        if (count < 0 && errno == EINTR)
            continue;
        if (count <= 0)
            return;
        writer_write(w, read_buf, count);
    }
}

static int exit_code(struct children *c) {
    while (!c->runc_done || (c->init > 0 && !c->init_done)) {
        if (reap(c, 0) < 0)
            break;
    }
    if (!c->runc_done)
        return LOST;
    if (!WIFEXITED(c->runc_status) || WEXITSTATUS(c->runc_status) != 0)
        return shell_status(c->runc_status); /* the start failed: runc said why in the log */
    return c->init_done ? shell_status(c->init_status) : LOST;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s DYNO_DIR RUNC ROOT UNSHIPPED_MAX_BYTES\n", argv[0]);
        return 2;
    }
    char *dir = argv[1];
    size_t length = strlen(dir);
    while (length > 1 && dir[length - 1] == '/')
        dir[--length] = '\0';
    const char *id = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) {
        fprintf(stderr, "paas-dyno-monitor: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    char pid[32];
    int pid_size = snprintf(pid, sizeof pid, "%d", (int)getpid());
    if (write_atomic("monitor.pid", pid, pid_size, 0644) != 0)
        fprintf(stderr, "paas-dyno-monitor: monitor.pid: %s\n", strerror(errno));
    /* Processes whose parent dies (the container's init, once runc exits) come here. */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    struct writer w;
    if (writer_open(&w, strtoll(argv[4], NULL, 10)) != 0) {
        fprintf(stderr, "paas-dyno-monitor: output.log: %s\n", strerror(errno));
        return 1;
    }
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
        fprintf(stderr, "paas-dyno-monitor: pipe: %s\n", strerror(errno));
        return 1;
    }
    struct children c = {0};
    c.runc = start_runc(argv, dir, id, pipe_fds[1]);
    close(pipe_fds[1]);
    if (c.runc < 0) {
        fprintf(stderr, "paas-dyno-monitor: fork: %s\n", strerror(errno));
        c.runc_done = 1;
        c.runc_status = 1 << 8;
    } else {
        pump(pipe_fds[0], &w, &c);
    }
    writer_close(&w);
    close(pipe_fds[0]);
    char code[16];
    int code_size = snprintf(code, sizeof code, "%d\n", exit_code(&c));
    if (write_atomic("exit-code", code, code_size, 0644) != 0) {
        fprintf(stderr, "paas-dyno-monitor: exit-code: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}
