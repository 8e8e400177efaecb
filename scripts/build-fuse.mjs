#!/usr/bin/env node
/**
 * Builds fuse-native's addon from its installed npm source with Syncmesh's patch (run by `postinstall`;
 * by hand: `node scripts/build-fuse.mjs`, `--force` to rebuild).
 *
 * The patch (level PATCH_LEVEL, exported by the addon as `syncmesh_patch`):
 * - sets libfuse2's flag_utime_omit_ok, so utimens is called when only one of atime/mtime is set
 *   (touch -m, touch -a, tar x), with UTIME_OMIT / UTIME_NOW in tv_nsec;
 * - hands utimens both timespecs unchanged (seconds as a JS number, nanoseconds as a uint32; stock
 *   fuse-native passes atime twice, rounded to the millisecond);
 * - `syncmesh_utimensat(path, aSec, aNsec, mSec, mNsec, cb)`: utimensat(2) without following a final
 *   symlink, on the libuv thread pool, cb(0 or -errno) (Node's fs.utimes takes seconds as a double and
 *   knows no UTIME_OMIT);
 * - getattr/fgetattr read the nanoseconds below the millisecond from stat array entries 18-20 when the
 *   array has them (stock fuse-native reads whole milliseconds only);
 * - fast paths, when the JS Fuse object has `_syncmeshPassthrough = { dataDir, reservedName, umask }` at
 *   mount time (passthrough.ts; file handles there are the real descriptors). For plain paths (not the
 *   reserved folder, not libfuse's .fuse_hidden files, which stay in JS) the FUSE thread serves from
 *   DATADIR + path itself: getattr (lstat), fgetattr (fstat of the handle), getxattr (lgetxattr), read
 *   (pread) and write (pwrite) never reach JS; the ranges written are kept per descriptor and JS takes
 *   them at fsync and release with `syncmesh_take_ranges(thread, fd)` (a Float64Array of [start, end)
 *   pairs; null when they could not all be kept: the whole file counts as written). create (open(2)
 *   O_CREAT, fchmod when our umask took bits) and open for writing make the system call here and then
 *   call JS with the new descriptor as one more argument, for it to record the handle and report the
 *   creation; a read-only open and its release do not reach JS; release of a handle calls JS (which
 *   takes the ranges and reports the writes), then close(2)s it here. Nothing that changes a file is
 *   hidden from capture: creations are reported by JS, writes at fsync/release as before.
 * - level 5, when the config also has `queueMax` > 0 and `onEvents` (a function): create, open for writing
 *   and release no longer wait for JS. Each makes its system call and puts a notification (op, path,
 *   descriptor, and for release the ranges written) on an in-order queue, wakes the event loop
 *   (uv_async_send; onEvents is called, and JS takes the queue with `syncmesh_take_events(thread)`), and
 *   answers the kernel. One per-mount lock is held across "system call + enqueue" of these and around every
 *   mutating operation JS still serves (JS takes the queue when such a call reaches it), so JS sees the
 *   mutations in the order they happened: see "Capture order" below for the argument. A full queue (JS
 *   behind by queueMax notifications) or no memory: the operation calls JS and waits, as at level 4.
 *   `syncmesh_order_try(thread)` / `syncmesh_order_release(thread)` let JS hold that lock for one
 *   synchronous step (the puller's last check and rename), never waiting for it.
 * - level 6: (a) the addon's own request loop in place of libfuse's fuse_loop_mt, for mounts whose config
 *   has `leadLoop: true`: one thread at a time reads /dev/fuse and serves what it read; before it waits for
 *   anything that may take long (JS, the order lock held by another thread, the disk, libfuse's path locks
 *   while a rename, unlink or rmdir is in progress) it hands the reading over to another thread. See "The
 *   request loop". (b) syncmesh_take_events packs the notifications into
 *   four values ([fallbacks, meta, paths, ranges]; level 5 built an array of four values per notification,
 *   which cost JS more than handling them), and a take that finds notifications leaves the wake-up off:
 *   JS takes the queue again a few ms later on its own (passthrough.ts POLL_MS), until a take finds it
 *   empty, so a burst costs one wake-up of the event loop per few ms instead of one per take.
 *
 * Nothing of fuse-native's source is kept in this repository: the installed fuse-native.c is edited at
 * a few small anchors (the pristine file is kept beside it as fuse-native.c.orig, so a later run patches
 * from it again), then `node-gyp rebuild` builds build/Release/fuse.node, which node-gyp-build prefers to
 * the prebuild. Idempotent: nothing is rebuilt when build/syncmesh-patch.json matches the patched source.
 *
 * Never fails the install: without a compiler (or when anything else goes wrong) it prints one warning
 * line and leaves fuse-native's stock prebuild in use (the mount then cannot honour UTIME_OMIT).
 * SYNCMESH_SKIP_FUSE_BUILD=1 skips it.
 */
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const PATCH_LEVEL = 6
const MARK = 'syncmesh patch'
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const force = process.argv.includes('--force')

const say = msg => process.stderr.write(`syncmesh: ${msg}\n`)
const fallback = why => say(`warning: ${why}; using fuse-native's stock prebuild (through the mount, touch -m/-a and tar x leave times unchanged, and times have ms precision)`)

// ---- the patch ------------------------------------------------------------------------------------

/** Our code, inserted before fuse-native's "// Methods" section. */
const HELPERS = `
/* ---- ${MARK} ${PATCH_LEVEL} (Syncmesh scripts/build-fuse.mjs) ---- */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

static const uint32_t syncmesh_patch = ${PATCH_LEVEL};

/* Stat arrays of at least 21 uint32s carry the nanoseconds below the millisecond of atime, mtime and
   ctime in entries 18, 19 and 20 (entries 12-17 keep fuse-native's whole milliseconds). */
static void syncmesh_stat_ns (const uint32_t *ints, size_t len, struct stat *st) {
  if (len < 21 * sizeof(uint32_t)) return;
  st->st_atim.tv_nsec += ints[18] % 1000000;
  st->st_mtim.tv_nsec += ints[19] % 1000000;
  st->st_ctim.tv_nsec += ints[20] % 1000000;
}

/* The result the FUSE thread got before calling JS (fd or byte count), or undefined. */
static void syncmesh_pre_arg (napi_env env, fuse_thread_locals_t *l, napi_value *out) {
  if (l->syncmesh_pre_valid) napi_create_int64(env, l->syncmesh_pre, out);
  else napi_get_undefined(env, out);
}

typedef struct {
  napi_async_work work;
  napi_ref cb;
  char *path;
  struct timespec ts[2];
  int res;
} syncmesh_utimens_t;

static void syncmesh_utimens_run (napi_env env, void *data) {
  syncmesh_utimens_t *r = (syncmesh_utimens_t *) data;
  r->res = utimensat(AT_FDCWD, r->path, r->ts, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
}

static void syncmesh_utimens_done (napi_env env, napi_status status, void *data) {
  syncmesh_utimens_t *r = (syncmesh_utimens_t *) data;
  napi_value cb, recv, res;
  napi_get_reference_value(env, r->cb, &cb);
  napi_get_undefined(env, &recv);
  napi_create_int32(env, status == napi_ok ? r->res : -ECANCELED, &res);
  napi_delete_reference(env, r->cb);
  napi_delete_async_work(env, r->work);
  free(r->path);
  free(r);
  napi_call_function(env, recv, cb, 1, &res, NULL);
}

/* syncmesh_utimensat(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec, cb): utimensat(2) with
   AT_SYMLINK_NOFOLLOW on the thread pool, then cb(0 or -errno). A nanosecond field may be UTIME_NOW or
   UTIME_OMIT. */
NAPI_METHOD(syncmesh_utimensat) {
  NAPI_ARGV(6)
  int64_t sec[2];
  uint32_t nsec[2];
  size_t len;
  napi_valuetype cbType;
  NAPI_STATUS_THROWS(napi_get_value_string_utf8(env, argv[0], NULL, 0, &len))
  NAPI_STATUS_THROWS(napi_get_value_int64(env, argv[1], &sec[0]))
  NAPI_STATUS_THROWS(napi_get_value_uint32(env, argv[2], &nsec[0]))
  NAPI_STATUS_THROWS(napi_get_value_int64(env, argv[3], &sec[1]))
  NAPI_STATUS_THROWS(napi_get_value_uint32(env, argv[4], &nsec[1]))
  NAPI_STATUS_THROWS(napi_typeof(env, argv[5], &cbType))
  if (cbType != napi_function) {
    napi_throw_type_error(env, NULL, "syncmesh_utimensat: callback must be a function");
    return NULL;
  }
  syncmesh_utimens_t *r = (syncmesh_utimens_t *) calloc(1, sizeof(syncmesh_utimens_t));
  char *p = (char *) malloc(len + 1);
  if (r == NULL || p == NULL) {
    free(r);
    free(p);
    napi_throw_error(env, NULL, "syncmesh_utimensat: out of memory");
    return NULL;
  }
  napi_get_value_string_utf8(env, argv[0], p, len + 1, &len);
  if (strlen(p) != len) {
    free(r);
    free(p);
    napi_throw_type_error(env, NULL, "syncmesh_utimensat: path contains a NUL byte");
    return NULL;
  }
  r->path = p;
  for (int i = 0; i < 2; i++) {
    r->ts[i].tv_sec = (time_t) sec[i];
    r->ts[i].tv_nsec = (long) nsec[i];
  }
  napi_value name;
  napi_create_string_utf8(env, "syncmesh_utimensat", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, argv[5], 1, &r->cb);
  if (napi_create_async_work(env, NULL, name, syncmesh_utimens_run, syncmesh_utimens_done, r, &r->work) != napi_ok ||
      napi_queue_async_work(env, r->work) != napi_ok) {
    napi_delete_reference(env, r->cb);
    free(r->path);
    free(r);
    napi_throw_error(env, NULL, "syncmesh_utimensat: cannot queue");
    return NULL;
  }
  return NULL;
}
/* ---- The request loop (level 6) ----
   libfuse's fuse_loop_mt keeps a pool of threads that all wait in read(2) on /dev/fuse: every request wakes
   one of them, and the thread that has just answered goes back to sleep behind the others, so each request
   is a hand-off between threads (futex calls, context switches), also when the requests of one program come
   strictly one after another (lookup, create, write, release of a small file).
   syncmesh_loop instead lets one thread at a time read (the leader) and serve what it read itself, so a
   stream of requests served in C runs on one thread without hand-offs, as in a single-threaded loop; but
   before this thread waits for anything that may take long, it hands the reading over (syncmesh_handoff):
   to an idle thread, else to a new one, and goes on with its request; when done it becomes idle (or reads
   again, if nobody took over). It hands over:
   - before libfuse even looks at a request of a kind C does not answer (syncmesh_inline_op: everything but
     lookup, getattr, open, read, write, flush, release, getxattr, create, forget, interrupt and init): JS
     serves it, and libfuse takes the request's path locks first, which may wait;
   - before any request while a rename, unlink or rmdir is in progress on the mount (lp->wlocking): those
     are the requests for which libfuse write-locks a node (get_path_wrlock, get_path2), and while one holds
     or waits for such a lock, libfuse makes requests on paths under that node wait in get_path (before our
     code runs) until it is done, i.e. until JS has served it: the leader must not be the one waiting;
   - before every call into JS (FUSE_NATIVE_HANDLER, and the fallbacks that first fetch the thread's locals);
   - before the order lock, when another thread holds it (that one may be waiting for JS);
   - before a read whose data are not in the page cache (preadv2 RWF_NOWAIT says so), and before a write
     larger than SYNCMESH_INLINE_WRITE (the cost of the hand-off is small beside it, and a writer throttled by
     the kernel's dirty-page limits must not hold up other programs' requests).
   So nothing that waits for JS, for the locks or for the disk's reads holds up the other requests: they are
   read and served by another thread as with fuse_loop_mt. What still runs on the leader are the short system
   calls of the fast paths (lstat, open, close, small pwrite, lgetxattr) and libfuse's own work.
   Threads: as many as requests wait at once (plus one reading), like fuse_loop_mt, up to
   SYNCMESH_LOOP_MAX_THREADS (a bound against runaway growth, far above what a mount needs); beyond
   SYNCMESH_LOOP_MAX_IDLE idle threads, a thread that finds the lead taken ends. When no thread can be
   started (pthread_create fails, or the bound), the lead stays free and the first thread to come back to
   the loop takes it; that is logged once. Threads are joined (by the next thread that ends, and all of them
   before the loop returns), so none still runs when the mount's state is freed. */
#include <signal.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SYNCMESH_RWF_NOWAIT 0x00000008 /* RWF_NOWAIT (Linux 4.14); sys/uio.h has it only with _GNU_SOURCE */

#define SYNCMESH_LOOP_MAX_THREADS 4096
#define SYNCMESH_LOOP_MAX_IDLE 8
#define SYNCMESH_INLINE_WRITE (64 * 1024)

/* FUSE opcodes (the kernel's protocol, linux/fuse.h) the loop looks at before libfuse takes a request */
enum {
  SYNCMESH_OP_LOOKUP = 1, SYNCMESH_OP_FORGET = 2, SYNCMESH_OP_GETATTR = 3, SYNCMESH_OP_UNLINK = 10,
  SYNCMESH_OP_RMDIR = 11, SYNCMESH_OP_RENAME = 12, SYNCMESH_OP_OPEN = 14, SYNCMESH_OP_READ = 15,
  SYNCMESH_OP_WRITE = 16, SYNCMESH_OP_RELEASE = 18, SYNCMESH_OP_GETXATTR = 22, SYNCMESH_OP_FLUSH = 25,
  SYNCMESH_OP_INIT = 26, SYNCMESH_OP_CREATE = 35, SYNCMESH_OP_INTERRUPT = 36, SYNCMESH_OP_BATCH_FORGET = 42,
  SYNCMESH_OP_RENAME2 = 45
};

/* Requests the leader serves itself: answered in C (the fast paths, or libfuse: flush is not implemented) or
   cheap bookkeeping. A fast path that turns out to need JS (the reserved folder, a full queue) hands over
   itself, after libfuse took the path locks: these take read locks only, which wait only while a
   write-locking request is in progress (lp->wlocking). */
static int syncmesh_inline_op (uint32_t op) {
  switch (op) {
    case SYNCMESH_OP_LOOKUP: case SYNCMESH_OP_FORGET: case SYNCMESH_OP_GETATTR: case SYNCMESH_OP_OPEN:
    case SYNCMESH_OP_READ: case SYNCMESH_OP_WRITE: case SYNCMESH_OP_RELEASE: case SYNCMESH_OP_GETXATTR:
    case SYNCMESH_OP_FLUSH: case SYNCMESH_OP_INIT: case SYNCMESH_OP_CREATE: case SYNCMESH_OP_INTERRUPT:
    case SYNCMESH_OP_BATCH_FORGET:
      return 1;
    default:
      return 0;
  }
}

/* Requests for which libfuse write-locks a node (libfuse2: unlink, rmdir, rename) */
static int syncmesh_wlocking_op (uint32_t op) {
  return op == SYNCMESH_OP_UNLINK || op == SYNCMESH_OP_RMDIR || op == SYNCMESH_OP_RENAME || op == SYNCMESH_OP_RENAME2;
}

struct syncmesh_loop;

/* One thread the loop started; on lp->ended once it left the loop, until joined. */
struct syncmesh_worker {
  pthread_t id;
  struct syncmesh_loop *lp;
  struct syncmesh_worker *next;
};

struct syncmesh_loop {
  struct fuse_session *se;
  struct fuse_chan *ch;
  size_t bufsize;
  pthread_mutex_t mut;
  pthread_cond_t lead_cond; /* idle threads wait here for the lead */
  pthread_cond_t done_cond; /* the first thread waits here for the others to end */
  int lead_taken; /* a thread leads (reads) or is about to */
  int idle; /* threads waiting for the lead */
  int threads; /* threads in the loop besides the first */
  int exiting;
  int error;
  int wlocking; /* write-locking requests (unlink, rmdir, rename) being served; atomic */
  struct syncmesh_worker *ended; /* threads that left the loop, to be joined */
  uint64_t handoffs; /* diagnostics */
  uint64_t spawn_failures; /* hand-overs that could start no thread (pthread_create failed, or the bound) */
  int peak_threads;
};

/* The loop this thread leads, NULL when it does not lead (or is no loop thread). */
static __thread struct syncmesh_loop *syncmesh_leading = NULL;

static void *syncmesh_loop_thread (void *data);

/* Blocks the signals meant for the process's main thread (as fuse_loop_mt does for its threads); synchronous
   ones (SIGSEGV, SIGBUS, SIGFPE, SIGILL, ...) must stay deliverable to the thread that raised them. */
static void syncmesh_block_signals (sigset_t *old) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGQUIT);
  pthread_sigmask(SIG_BLOCK, &set, old);
}

/* Joins the threads of a list taken from lp->ended (without lp->mut held: they may still be finishing). */
static void syncmesh_join_ended (struct syncmesh_worker *w) {
  while (w != NULL) {
    struct syncmesh_worker *next = w->next;
    pthread_join(w->id, NULL);
    free(w);
    w = next;
  }
}

/* With lp->mut held: a new loop thread. -1 (counted, logged once) when none can be started. */
static int syncmesh_loop_spawn (struct syncmesh_loop *lp) {
  int err = EAGAIN;
  struct syncmesh_worker *w = NULL;
  if (lp->threads + 1 < SYNCMESH_LOOP_MAX_THREADS && (w = (struct syncmesh_worker *) calloc(1, sizeof(struct syncmesh_worker))) != NULL) {
    sigset_t old;
    w->lp = lp;
    syncmesh_block_signals(&old);
    err = pthread_create(&w->id, NULL, syncmesh_loop_thread, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
  } else if (lp->threads + 1 < SYNCMESH_LOOP_MAX_THREADS) {
    err = ENOMEM;
  }
  if (err != 0) {
    free(w);
    if (lp->spawn_failures++ == 0) {
      fprintf(stderr, "[fuse] request loop: cannot start another thread (%s, %d running): requests wait until a busy thread is free (logged once)\\n",
        lp->threads + 1 >= SYNCMESH_LOOP_MAX_THREADS ? "the bound of SYNCMESH_LOOP_MAX_THREADS" : strerror(err), lp->threads + 1);
    }
    return -1;
  }
  lp->threads++;
  if (lp->threads > lp->peak_threads) lp->peak_threads = lp->threads;
  return 0;
}

/* Before this thread waits: if it leads, another thread takes over the reading (an idle one, else a new one;
   when neither can be had, the first thread to come back to the loop takes it). Cheap when not leading. */
static void syncmesh_handoff (void) {
  struct syncmesh_loop *lp = syncmesh_leading;
  if (lp == NULL) return;
  syncmesh_leading = NULL;
  pthread_mutex_lock(&lp->mut);
  lp->lead_taken = 0;
  lp->handoffs++;
  if (lp->idle > 0) pthread_cond_signal(&lp->lead_cond);
  else if (!lp->exiting) syncmesh_loop_spawn(lp);
  pthread_mutex_unlock(&lp->mut);
}

/* The opcode of a request read into fbuf (struct fuse_in_header: len, then opcode), 0 when not in memory. */
static uint32_t syncmesh_opcode (const struct fuse_buf *fbuf) {
  uint32_t op = 0;
  if (!(fbuf->flags & FUSE_BUF_IS_FD) && fbuf->mem != NULL && fbuf->size >= 2 * sizeof(uint32_t)) {
    memcpy(&op, (const char *) fbuf->mem + sizeof(uint32_t), sizeof(uint32_t));
  }
  return op;
}

/* Takes the lead when free and serves requests while leading; returns when the session ends, or (not the
   first thread) when enough threads are idle already. */
static void syncmesh_loop_work (struct syncmesh_loop *lp, char *buf, int first) {
  pthread_mutex_lock(&lp->mut);
  for (;;) {
    int retire = 0;
    while (lp->lead_taken && !lp->exiting) {
      if (!first && lp->idle >= SYNCMESH_LOOP_MAX_IDLE) { retire = 1; break; }
      lp->idle++;
      pthread_cond_wait(&lp->lead_cond, &lp->mut);
      lp->idle--;
    }
    if (lp->exiting || retire) break;
    lp->lead_taken = 1;
    pthread_mutex_unlock(&lp->mut);
    syncmesh_leading = lp;
    int end = 0;
    while (syncmesh_leading == lp) {
      if (fuse_session_exited(lp->se)) { end = 1; break; }
      struct fuse_chan *ch = lp->ch;
      struct fuse_buf fbuf = { .mem = buf, .size = lp->bufsize };
      int res = fuse_session_receive_buf(lp->se, &fbuf, &ch);
      if (res == -EINTR || res == -EAGAIN) continue;
      if (res <= 0) {
        if (res < 0) lp->error = res;
        end = 1;
        break;
      }
      uint32_t op = syncmesh_opcode(&fbuf);
      int wlocking = syncmesh_wlocking_op(op);
      /* counted before the hand-over: the next leader sees it */
      if (wlocking) __atomic_add_fetch(&lp->wlocking, 1, __ATOMIC_SEQ_CST);
      if (wlocking || !syncmesh_inline_op(op) || __atomic_load_n(&lp->wlocking, __ATOMIC_SEQ_CST) > 0) syncmesh_handoff();
      fuse_session_process_buf(lp->se, &fbuf, ch);
      if (wlocking) __atomic_sub_fetch(&lp->wlocking, 1, __ATOMIC_SEQ_CST);
    }
    syncmesh_leading = NULL;
    pthread_mutex_lock(&lp->mut);
    if (end || fuse_session_exited(lp->se)) {
      /* unmounted (or the device failed): every thread leaves; those busy with a request leave after it */
      lp->exiting = 1;
      fuse_session_exit(lp->se);
      pthread_cond_broadcast(&lp->lead_cond);
    }
  }
  pthread_mutex_unlock(&lp->mut);
}

static void *syncmesh_loop_thread (void *data) {
  struct syncmesh_worker *self = (struct syncmesh_worker *) data;
  struct syncmesh_loop *lp = self->lp;
  char *buf = (char *) malloc(lp->bufsize);
  if (buf != NULL) syncmesh_loop_work(lp, buf, 0);
  free(buf);
  /* joins the threads that ended before it, then leaves itself to be joined */
  pthread_mutex_lock(&lp->mut);
  struct syncmesh_worker *ended = lp->ended;
  lp->ended = NULL;
  pthread_mutex_unlock(&lp->mut);
  syncmesh_join_ended(ended);
  pthread_mutex_lock(&lp->mut);
  lp->threads--;
  self->next = lp->ended;
  lp->ended = self;
  pthread_cond_broadcast(&lp->done_cond);
  if (buf == NULL) pthread_cond_signal(&lp->lead_cond); /* (the lead it was started for may still be free) */
  pthread_mutex_unlock(&lp->mut);
  return NULL;
}

/* Runs the loop in the calling thread (fuse-native's FUSE thread) until the session ends, then waits for the
   threads it started and joins them. -2: it could not start (nothing was read), the caller uses fuse_loop_mt. */
static int syncmesh_loop_run (struct fuse *f, struct syncmesh_loop *lp) {
  sigset_t old;
  memset(lp, 0, sizeof(struct syncmesh_loop));
  lp->se = fuse_get_session(f);
  lp->ch = fuse_session_next_chan(lp->se, NULL);
  if (lp->ch == NULL) return -2;
  lp->bufsize = fuse_chan_bufsize(lp->ch);
  if (pthread_mutex_init(&lp->mut, NULL) != 0 || pthread_cond_init(&lp->lead_cond, NULL) != 0 || pthread_cond_init(&lp->done_cond, NULL) != 0) return -2;
  char *buf = (char *) malloc(lp->bufsize);
  if (buf == NULL) return -2;
  if (fuse_start_cleanup_thread(f) != 0) {
    free(buf);
    return -2;
  }
  syncmesh_block_signals(&old);
  syncmesh_loop_work(lp, buf, 1);
  pthread_mutex_lock(&lp->mut);
  while (lp->threads > 0) pthread_cond_wait(&lp->done_cond, &lp->mut);
  struct syncmesh_worker *ended = lp->ended;
  lp->ended = NULL;
  pthread_mutex_unlock(&lp->mut);
  syncmesh_join_ended(ended);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  fuse_stop_cleanup_thread(f);
  fuse_session_reset(lp->se);
  free(buf);
  if (getenv("SYNCMESH_FUSE_STATS") != NULL && strcmp(getenv("SYNCMESH_FUSE_STATS"), "1") == 0) {
    fprintf(stderr, "[fuse] request loop: %llu hand-overs of the lead, at most %d threads besides the first, %llu hand-overs that could start no thread\\n",
      (unsigned long long) lp->handoffs, lp->peak_threads, (unsigned long long) lp->spawn_failures);
  }
  return lp->error < 0 ? -1 : 0;
}

/* fuse-native's FUSE thread: syncmesh_loop_run when the mount asked for it (leadLoop), else libfuse's loop. */
static void syncmesh_serve (fuse_thread_t *ft) {
  if (ft->syncmesh_data_len > 0 && ft->syncmesh_lead_loop) {
    struct syncmesh_loop *lp = (struct syncmesh_loop *) calloc(1, sizeof(struct syncmesh_loop));
    int res = lp == NULL ? -2 : syncmesh_loop_run(ft->fuse, lp);
    if (lp != NULL && res != -2) {
      pthread_mutex_destroy(&lp->mut);
      pthread_cond_destroy(&lp->lead_cond);
      pthread_cond_destroy(&lp->done_cond);
    }
    free(lp);
    if (res != -2) return;
  }
  fuse_loop_mt(ft->fuse); /* as fuse-native does */
}
/* ---- end of ${MARK} helpers ---- */

`

/** Fields of fuse_thread_locals_t (per FUSE thread): a result the FUSE thread got before calling JS. */
const LOCALS_FIELDS = `  int syncmesh_pre_valid; /* ${MARK}: syncmesh_pre is set for the request being dispatched */
  int64_t syncmesh_pre;
`

/** Fields of fuse_thread_t (per mount) for the fast paths. */
const THREAD_FIELDS = `  /* ${MARK}: fast paths (syncmesh_setup); syncmesh_data_len 0 = off */
  char syncmesh_data[4096];
  size_t syncmesh_data_len;
  char syncmesh_reserved[260];
  size_t syncmesh_reserved_len;
  mode_t syncmesh_umask;
  uv_mutex_t syncmesh_ranges_mut; /* guards the table below */
  struct syncmesh_ranges *syncmesh_ranges; /* ranges written, by descriptor */
  size_t syncmesh_ranges_len;
  /* ordering point of every mutation (see "Capture order" in the fast paths) */
  uv_mutex_t syncmesh_order;
  /* notifications for JS (create, open for writing, release), in the order their system calls happened */
  uv_mutex_t syncmesh_queue_mut; /* guards the queue, never held while waiting for anything */
  struct syncmesh_event *syncmesh_head;
  struct syncmesh_event *syncmesh_tail;
  size_t syncmesh_queued;
  size_t syncmesh_queue_max; /* 0: no queue, create/open/release call JS and wait (level 4) */
  uint64_t syncmesh_sync_fallbacks; /* notifications that could not be queued (full, no memory): JS was called and waited for */
  uv_async_t syncmesh_wake; /* wakes JS (syncmesh_on_events) when something was queued */
  int syncmesh_wake_pending; /* woken and not taken since, or JS will take again soon (level 6): no need to wake it */
  napi_ref syncmesh_on_events;
  int syncmesh_lead_loop; /* level 6: serve with syncmesh_loop_run instead of fuse_loop_mt */
  int syncmesh_nowait_off; /* preadv2 RWF_NOWAIT failed as unsupported: reads do not ask the page cache alone (atomic) */
`

/** Our fast paths, inserted before fuse-native's "// Top-level dispatcher" (after its FUSE methods). */
const FAST_PATHS = `
/* ---- ${MARK} ${PATCH_LEVEL}: getattr, fgetattr and getxattr answered in the FUSE thread ---- */
#include <limits.h>
#include <sys/xattr.h>

/* The event loop was woken: JS drains the queue (onEvents calls syncmesh_take_events). */
static void syncmesh_wake_cb (uv_async_t *handle) {
  fuse_thread_t *ft = (fuse_thread_t *) handle->data;
  FUSE_NATIVE_CALLBACK(ft->syncmesh_on_events, {
    NAPI_MAKE_CALLBACK(env, NULL, ctx, callback, 0, NULL, NULL)
  })
}

/* Reads the JS object's _syncmeshPassthrough = { dataDir, reservedName } at mount time. */
static void syncmesh_setup (napi_env env, napi_value self, fuse_thread_t *ft) {
  napi_value cfg, v;
  napi_valuetype t;
  size_t len, rlen;
  char name[sizeof(ft->syncmesh_reserved) - 1];
  uint32_t mask;
  ft->syncmesh_data_len = 0;
  if (napi_get_named_property(env, self, "_syncmeshPassthrough", &cfg) != napi_ok) return;
  if (napi_typeof(env, cfg, &t) != napi_ok || t != napi_object) return;
  if (napi_get_named_property(env, cfg, "dataDir", &v) != napi_ok) return;
  if (napi_get_value_string_utf8(env, v, ft->syncmesh_data, sizeof(ft->syncmesh_data), &len) != napi_ok) return;
  if (len == 0 || len >= sizeof(ft->syncmesh_data) - 1 || strlen(ft->syncmesh_data) != len || ft->syncmesh_data[0] != '/') return;
  if (napi_get_named_property(env, cfg, "reservedName", &v) != napi_ok) return;
  if (napi_get_value_string_utf8(env, v, name, sizeof(name), &rlen) != napi_ok) return;
  if (rlen == 0 || rlen >= sizeof(name) - 1 || strlen(name) != rlen || strchr(name, '/') != NULL) return;
  if (napi_get_named_property(env, cfg, "umask", &v) != napi_ok || napi_get_value_uint32(env, v, &mask) != napi_ok) return;
  ft->syncmesh_umask = (mode_t) (mask & 07777);
  uint32_t qmax = 0;
  if (napi_get_named_property(env, cfg, "queueMax", &v) == napi_ok) napi_get_value_uint32(env, v, &qmax);
  napi_value onEvents;
  int haveOnEvents = napi_get_named_property(env, cfg, "onEvents", &onEvents) == napi_ok && napi_typeof(env, onEvents, &t) == napi_ok && t == napi_function;
  if (uv_mutex_init(&ft->syncmesh_ranges_mut) != 0) return;
  if (uv_mutex_init(&ft->syncmesh_order) != 0 || uv_mutex_init(&ft->syncmesh_queue_mut) != 0) return;
  ft->syncmesh_ranges = NULL;
  ft->syncmesh_ranges_len = 0;
  ft->syncmesh_head = ft->syncmesh_tail = NULL;
  ft->syncmesh_queued = 0;
  ft->syncmesh_sync_fallbacks = 0;
  ft->syncmesh_wake_pending = 0;
  ft->syncmesh_queue_max = 0;
  ft->syncmesh_nowait_off = 0;
  if (qmax > 0 && haveOnEvents && napi_create_reference(env, onEvents, 1, &ft->syncmesh_on_events) == napi_ok) {
    /* never closed, like fuse-native's own handles: ft lives as long as the process (fuse-native keeps a
       reference to the Fuse object, which holds the buffer ft is in) */
    if (uv_async_init(uv_default_loop(), &ft->syncmesh_wake, syncmesh_wake_cb) == 0) {
      uv_unref((uv_handle_t *) &ft->syncmesh_wake);
      ft->syncmesh_wake.data = ft;
      ft->syncmesh_queue_max = qmax;
    }
  }
  bool lead = false;
  ft->syncmesh_lead_loop = napi_get_named_property(env, cfg, "leadLoop", &v) == napi_ok && napi_get_value_bool(env, v, &lead) == napi_ok && lead;
  ft->syncmesh_reserved[0] = '/';
  memcpy(ft->syncmesh_reserved + 1, name, rlen + 1);
  ft->syncmesh_reserved_len = rlen + 1;
  ft->syncmesh_data_len = len;
}

/* DATADIR + path for a plain path; 0 for the reserved folder, libfuse's hidden files, or when off. */
static int syncmesh_real (const char *path, char *out) {
  fuse_thread_t *ft = (fuse_thread_t *) fuse_get_context()->private_data;
  if (ft == NULL || ft->syncmesh_data_len == 0 || path == NULL || path[0] != '/') return 0;
  size_t rl = ft->syncmesh_reserved_len;
  if (strncmp(path, ft->syncmesh_reserved, rl) == 0 && (path[rl] == '\\0' || path[rl] == '/')) return 0;
  if (strstr(path, ".fuse_hidden") != NULL) return 0;
  size_t pl = strlen(path);
  if (ft->syncmesh_data_len + pl + 1 > PATH_MAX) return 0;
  memcpy(out, ft->syncmesh_data, ft->syncmesh_data_len);
  memcpy(out + ft->syncmesh_data_len, path, pl + 1);
  return 1;
}

static int syncmesh_getattr (const char *path, struct stat *st) {
  char real[PATH_MAX];
  if (!syncmesh_real(path, real)) return fuse_native_getattr(path, st);
  return lstat(real, st) == 0 ? 0 : -errno;
}

/* The file handle is the real file's descriptor (passthrough.ts open/create). */
static int syncmesh_fgetattr (const char *path, struct stat *st, struct fuse_file_info *info) {
  char real[PATH_MAX];
  if (info != NULL && info->fh != 0 && fstat((int) info->fh, st) == 0) return 0;
  if (!syncmesh_real(path, real)) return fuse_native_fgetattr(path, st, info);
  return lstat(real, st) == 0 ? 0 : -errno;
}

static int syncmesh_getxattr (const char *path, const char *name, char *value, size_t size) {
  char real[PATH_MAX];
  if (!syncmesh_real(path, real)) return fuse_native_getxattr(path, name, value, size);
  ssize_t n = lgetxattr(real, name, value, size);
  return n < 0 ? -errno : (int) n;
}

/* Around a call into JS: the result the FUSE thread already has goes along as one more argument. */
static fuse_thread_locals_t *syncmesh_pre_set (int64_t value) {
  syncmesh_handoff(); /* JS is called next (and get_thread_locals may wait for it) */
  fuse_thread_locals_t *l = get_thread_locals();
  l->syncmesh_pre = value;
  l->syncmesh_pre_valid = 1;
  return l;
}

static int syncmesh_pre_clear (fuse_thread_locals_t *l, int res) {
  l->syncmesh_pre_valid = 0;
  return res;
}

#ifndef O_NOATIME
#define O_NOATIME 01000000 /* Linux's value; fcntl.h has it only with _GNU_SOURCE */
#endif
/* open(2) flags passed on to the real file, as passthrough.ts does (the kernel handled O_CREAT/O_EXCL/O_TRUNC) */
#define SYNCMESH_KEPT_OPEN_FLAGS (O_ACCMODE | O_APPEND | O_SYNC | O_DSYNC | O_NOATIME)

static void syncmesh_set_quiet (fuse_thread_t *ft, int fd);

/* Ranges written to one descriptor since JS last took them. */
struct syncmesh_ranges {
  int64_t *v; /* [start, end) pairs in the order written; a write that starts inside the last one extends it */
  size_t n, cap; /* pairs */
  int unknown; /* a range could not be kept: the whole file counts as written */
  int quiet; /* opened read-only here (syncmesh_open): JS does not know this descriptor */
};

#define SYNCMESH_MAX_PAIRS ((size_t) 1 << 20)

/* Makes sure the table has a slot for fd (it never shrinks). With the mutex held. */
static int syncmesh_slot (fuse_thread_t *ft, int fd) {
  if (fd < 0) return -EBADF;
  if ((size_t) fd < ft->syncmesh_ranges_len) return 0;
  size_t len = ft->syncmesh_ranges_len == 0 ? 64 : ft->syncmesh_ranges_len;
  while (len <= (size_t) fd) len *= 2;
  struct syncmesh_ranges *t = (struct syncmesh_ranges *) realloc(ft->syncmesh_ranges, len * sizeof(struct syncmesh_ranges));
  if (t == NULL) return -ENOMEM;
  memset(t + ft->syncmesh_ranges_len, 0, (len - ft->syncmesh_ranges_len) * sizeof(struct syncmesh_ranges));
  ft->syncmesh_ranges = t;
  ft->syncmesh_ranges_len = len;
  return 0;
}

/* With the mutex held. */
static void syncmesh_add_range (struct syncmesh_ranges *r, int64_t start, int64_t end) {
  if (r->unknown) return;
  if (r->n > 0) {
    int64_t *last = r->v + 2 * (r->n - 1);
    if (start >= last[0] && start <= last[1]) {
      if (end > last[1]) last[1] = end;
      return;
    }
  }
  if (r->n == r->cap) {
    size_t cap = r->cap == 0 ? 4 : r->cap * 2;
    int64_t *v = cap > SYNCMESH_MAX_PAIRS ? NULL : (int64_t *) realloc(r->v, cap * 2 * sizeof(int64_t));
    if (v == NULL) {
      free(r->v);
      memset(r, 0, sizeof(struct syncmesh_ranges));
      r->unknown = 1;
      return;
    }
    r->v = v;
    r->cap = cap;
  }
  r->v[2 * r->n] = start;
  r->v[2 * r->n + 1] = end;
  r->n++;
}

/* Moves fd's ranges out of the table (into *out, which the caller frees). */
static void syncmesh_move_ranges (fuse_thread_t *ft, int fd, struct syncmesh_ranges *out) {
  memset(out, 0, sizeof(struct syncmesh_ranges));
  uv_mutex_lock(&ft->syncmesh_ranges_mut);
  if (fd >= 0 && (size_t) fd < ft->syncmesh_ranges_len) {
    *out = ft->syncmesh_ranges[fd];
    memset(&ft->syncmesh_ranges[fd], 0, sizeof(struct syncmesh_ranges));
  }
  uv_mutex_unlock(&ft->syncmesh_ranges_mut);
}

/* Marks fd as opened read-only here: its release does not go to JS (which never heard of it). If the table
   cannot grow, JS simply hears of the release. */
static void syncmesh_set_quiet (fuse_thread_t *ft, int fd) {
  uv_mutex_lock(&ft->syncmesh_ranges_mut);
  if (syncmesh_slot(ft, fd) == 0) ft->syncmesh_ranges[fd].quiet = 1;
  uv_mutex_unlock(&ft->syncmesh_ranges_mut);
}

static int syncmesh_is_quiet (fuse_thread_t *ft, int fd) {
  uv_mutex_lock(&ft->syncmesh_ranges_mut);
  int quiet = fd >= 0 && (size_t) fd < ft->syncmesh_ranges_len && ft->syncmesh_ranges[fd].quiet;
  uv_mutex_unlock(&ft->syncmesh_ranges_mut);
  return quiet;
}

/* write: pwrite(2) to the handle, the range kept for JS (syncmesh_take_ranges); JS is not called. */
static int syncmesh_write (const char *path, const char *buf, size_t len, off_t offset, struct fuse_file_info *info) {
  if (info == NULL || info->fh == 0) return fuse_native_write(path, buf, len, offset, info);
  fuse_thread_t *ft = (fuse_thread_t *) fuse_get_context()->private_data;
  int fd = (int) info->fh;
  uv_mutex_lock(&ft->syncmesh_ranges_mut);
  int err = syncmesh_slot(ft, fd);
  uv_mutex_unlock(&ft->syncmesh_ranges_mut);
  if (err != 0) return err;
  if (len > SYNCMESH_INLINE_WRITE) syncmesh_handoff();
  ssize_t n = pwrite(fd, buf, len, offset);
  if (n < 0) return -errno;
  if (n > 0) {
    uv_mutex_lock(&ft->syncmesh_ranges_mut);
    syncmesh_add_range(&ft->syncmesh_ranges[fd], (int64_t) offset, (int64_t) offset + n);
    uv_mutex_unlock(&ft->syncmesh_ranges_mut);
  }
  return (int) n;
}

/* syncmesh_take_ranges(thread, fd): the ranges written to fd since the last take, as a Float64Array of
   [start, end) pairs; null when they could not all be kept (the whole file counts); undefined if none. */
NAPI_METHOD(syncmesh_take_ranges) {
  NAPI_ARGV(2)
  NAPI_ARGV_BUFFER_CAST(fuse_thread_t *, ft, 0)
  NAPI_ARGV_INT32(fd, 1)
  napi_value out;
  napi_get_undefined(env, &out);
  if (ft_len < sizeof(fuse_thread_t) || ft->syncmesh_data_len == 0) return out;
  struct syncmesh_ranges r;
  syncmesh_move_ranges(ft, fd, &r);
  if (r.unknown) {
    napi_get_null(env, &out);
  } else if (r.n > 0) {
    napi_value ab;
    void *data;
    if (napi_create_arraybuffer(env, r.n * 2 * sizeof(double), &data, &ab) == napi_ok) {
      for (size_t i = 0; i < r.n * 2; i++) ((double *) data)[i] = (double) r.v[i];
      if (napi_create_typedarray(env, napi_float64_array, r.n * 2, ab, 0, &out) != napi_ok) napi_get_null(env, &out);
    } else {
      napi_get_null(env, &out);
    }
  }
  free(r.v);
  return out;
}

/* preadv2(2) with RWF_NOWAIT: what the page cache has at offset, without waiting for the disk (EAGAIN when it
   has nothing there). Through syscall(2): glibc declares preadv2 only with _GNU_SOURCE. */
static ssize_t syncmesh_read_nowait (int fd, char *buf, size_t len, off_t offset) {
#ifdef SYS_preadv2
  struct iovec iov = { buf, len };
  return syscall(SYS_preadv2, fd, &iov, 1, (long) offset, (long) ((uint64_t) offset >> 32), SYNCMESH_RWF_NOWAIT);
#else
  errno = ENOSYS;
  return -1;
#endif
}

/* read: pread(2) from the handle; nothing for JS. */
static int syncmesh_read (const char *path, char *buf, size_t len, off_t offset, struct fuse_file_info *info) {
  if (info == NULL || info->fh == 0) return fuse_native_read(path, buf, len, offset, info);
  int fd = (int) info->fh;
  size_t done = 0;
  if (syncmesh_leading != NULL) {
    /* leading the loop: only what the page cache has, without waiting for the disk. A short count is not
       "not cached": the kernel asks whole pages (4 KiB and more) also of a 6-byte file, so the rest is asked
       again: 0 is the end of the file, EAGAIN what the disk must give */
    fuse_thread_t *ft = (fuse_thread_t *) fuse_get_context()->private_data;
    int known = 0; /* done is all there is (the end of the file, or len) */
    if (!__atomic_load_n(&ft->syncmesh_nowait_off, __ATOMIC_RELAXED)) {
      for (;;) {
        ssize_t n = syncmesh_read_nowait(fd, buf + done, len - done, offset + (off_t) done);
        if (n > 0) {
          done += (size_t) n;
          if (done == len) { known = 1; break; }
          continue;
        }
        if (n == 0) { known = 1; break; }
        if (errno == EAGAIN) break;
        if (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL) {
          /* the kernel or the data folder's file system cannot say: every read hands over first from now on */
          if (__atomic_exchange_n(&ft->syncmesh_nowait_off, 1, __ATOMIC_RELAXED) == 0) {
            fprintf(stderr, "[fuse] reads cannot ask the page cache alone (preadv2 RWF_NOWAIT: %s): every read through the mount is handed to another thread (logged once)\\n", strerror(errno));
          }
          break;
        }
        if (errno == EINTR) continue;
        if (done > 0) { known = 1; break; }
        return -errno;
      }
    }
    if (known) return (int) done;
    syncmesh_handoff(); /* the rest waits for the disk */
  }
  while (done < len) {
    /* a short count would tell the kernel the file ends here: read on until len or the end of the file */
    ssize_t n = pread(fd, buf + done, len - done, offset + (off_t) done);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (done > 0) break;
      return -errno;
    }
    if (n == 0) break;
    done += (size_t) n;
  }
  return (int) done;
}

/* ---- Capture order ----
   JS must see the mutations made through the mount in the order they happened in the data folder, also
   across libfuse's threads, and its handle table ("open for writing", by descriptor and path) must follow
   the files. The ordering point is ft->syncmesh_order, a per-mount mutex:
   - create, open for writing and release of a written file served here hold it across their system call
     (open(2) / close(2)) and the enqueue of their notification; the FUSE thread then answers the kernel
     without waiting for JS (JS is woken with uv_async_send and drains the queue in order);
   - every other mutating operation, which JS serves (rename, unlink, mkdir, rmdir, mknod, symlink, link,
     truncate, ftruncate, fsync, chmod, chown, utimens, setxattr, removexattr, and create/open/release of
     the reserved folder and libfuse's hidden files), holds it in the FUSE thread for the whole call into
     JS, and JS drains the queue when the call reaches it, before doing anything (passthrough.ts).
   So every mutation is one step under one lock: a served-here mutation is either wholly before a JS one
   (its notification is queued before the lock is released, and JS takes the queue when the JS op starts,
   so it is handled before the JS op's system call and report) or wholly after (its system call cannot
   run until the JS op has made its system call and reported). E.g. a create of d/x in one thread and a
   rename of d to e in another: either the file was created first, and JS records the handle of d/x
   before the rename moves it to e/x, or the rename came first and the create fails (ENOENT) or creates
   a new d/x after it. Among themselves served-here mutations are ordered by the lock too.
   The lock is never held while waiting for anything but JS, and JS never takes it (draining takes only
   syncmesh_queue_mut, the ranges only syncmesh_ranges_mut; lock order: order, then ranges or queue), so
   waiting for JS under it cannot deadlock; it serializes the mutating operations JS serves (they already
   ran one after another on its one thread).
   Writes (pwrite) are not in the queue: their ranges are kept by descriptor and travel in the release's
   notification (or are taken by JS's fsync), which is what orders them.
   Descriptors: release takes the ranges out of the table into its notification and close(2)s the
   descriptor under the lock, after the enqueue; a create or open that gets the same number back needs
   the lock, so its notification comes after the release's, and JS (which keys handles by descriptor)
   forgets the old handle before it records the new one. JS never uses a descriptor it holds a handle
   for except in requests the kernel makes on that open file (fsync, ftruncate), which cannot come after
   its release; at unmount it drains the queue before closing what is left.
   Nothing lost: when a notification cannot be queued (queue full: JS is behind; or no memory) the
   operation calls JS and waits for it as before (level 4), still under the lock, and the fallback is
   counted (JS logs it). */

enum { SYNCMESH_EV_CREATE = 1, SYNCMESH_EV_OPEN = 2, SYNCMESH_EV_RELEASE = 3 };

struct syncmesh_event {
  struct syncmesh_event *next;
  int op;
  int fd;
  struct syncmesh_ranges ranges; /* release: the ranges written, moved out of the table */
  char path[]; /* the path in the mount, as libfuse gave it */
};

static fuse_thread_t *syncmesh_ft (void) {
  return (fuse_thread_t *) fuse_get_context()->private_data;
}

/* The order lock; when another thread holds it (maybe waiting for JS), the lead of the loop is handed over first. */
static void syncmesh_order_lock (fuse_thread_t *ft) {
  if (uv_mutex_trylock(&ft->syncmesh_order) == 0) return;
  syncmesh_handoff();
  uv_mutex_lock(&ft->syncmesh_order); /* asleep until it is free (the holder may be waiting for JS for long) */
}

/* A notification for JS, or NULL when there is no queue, it is full, or no memory. With the order lock held. */
static struct syncmesh_event *syncmesh_event_new (fuse_thread_t *ft, int op, const char *path, int fd) {
  if (ft->syncmesh_queue_max == 0) return NULL;
  uv_mutex_lock(&ft->syncmesh_queue_mut);
  int full = ft->syncmesh_queued >= ft->syncmesh_queue_max;
  uv_mutex_unlock(&ft->syncmesh_queue_mut);
  if (full) return NULL;
  if (path == NULL) path = "";
  size_t pl = strlen(path);
  struct syncmesh_event *e = (struct syncmesh_event *) malloc(sizeof(struct syncmesh_event) + pl + 1);
  if (e == NULL) return NULL;
  memset(e, 0, sizeof(struct syncmesh_event));
  e->op = op;
  e->fd = fd;
  memcpy(e->path, path, pl + 1);
  return e;
}

/* Appends e (only this thread adds while it holds the order lock, so the room seen above is still there)
   and wakes JS. With the order lock held. */
static void syncmesh_event_push (fuse_thread_t *ft, struct syncmesh_event *e) {
  uv_mutex_lock(&ft->syncmesh_queue_mut);
  if (ft->syncmesh_tail == NULL) ft->syncmesh_head = e;
  else ft->syncmesh_tail->next = e;
  ft->syncmesh_tail = e;
  ft->syncmesh_queued++;
  int wake = !ft->syncmesh_wake_pending;
  ft->syncmesh_wake_pending = 1;
  uv_mutex_unlock(&ft->syncmesh_queue_mut);
  if (wake) uv_async_send(&ft->syncmesh_wake);
}

static void syncmesh_count_fallback (fuse_thread_t *ft) {
  if (ft->syncmesh_queue_max == 0) return; /* no queue: not a fallback */
  uv_mutex_lock(&ft->syncmesh_queue_mut);
  ft->syncmesh_sync_fallbacks++;
  uv_mutex_unlock(&ft->syncmesh_queue_mut);
}

/* create: open(2) here (the kernel calls create after a lookup found nothing) and a notification for JS,
   which records the handle and reports the creation. */
static int syncmesh_create (const char *path, mode_t mode, struct fuse_file_info *info) {
  char real[PATH_MAX];
  fuse_thread_t *ft = syncmesh_ft();
  syncmesh_order_lock(ft);
  int res;
  if (!syncmesh_real(path, real)) {
    res = fuse_native_create(path, mode, info);
  } else {
    /* O_TRUNC and O_EXCL as the program asked: no-ops for the new file the kernel expects, but if a file
       appeared under the name since the kernel's lookup (the puller installed a peer's version), the
       program gets what it would have got a moment later: the file emptied, or EEXIST */
    /* O_SYNC/O_DSYNC kept too (a program that asked for synchronous writes gets them); not O_APPEND: the
       kernel already passes an append's offset (its size of the file), which keeps the recorded range exact.
       O_NOFOLLOW: the kernel never creates through a symlink, so a symlink here was installed since its
       lookup, and following it could write outside the data folder */
    int fd = open(real, O_CREAT | O_RDWR | O_CLOEXEC | O_NOFOLLOW | (info->flags & (O_TRUNC | O_EXCL | O_SYNC | O_DSYNC)), mode & 07777);
    if (fd < 0) {
      res = -errno;
    } else {
      if ((mode & ft->syncmesh_umask & 07777) != 0) fchmod(fd, mode & 07777);
      info->fh = fd;
      struct syncmesh_event *e = syncmesh_event_new(ft, SYNCMESH_EV_CREATE, path, fd);
      if (e != NULL) {
        syncmesh_event_push(ft, e);
        res = 0;
      } else {
        syncmesh_count_fallback(ft);
        fuse_thread_locals_t *l = syncmesh_pre_set(fd);
        res = syncmesh_pre_clear(l, fuse_native_create(path, mode, info));
        if (res != 0) close(fd);
      }
    }
  }
  uv_mutex_unlock(&ft->syncmesh_order);
  return res;
}

/* open: open(2) here; JS hears only of opens for writing (a notification: it records the handle). */
static int syncmesh_open (const char *path, struct fuse_file_info *info) {
  char real[PATH_MAX];
  fuse_thread_t *ft = syncmesh_ft();
  int writing = (info->flags & O_ACCMODE) != O_RDONLY;
  if (!syncmesh_real(path, real)) {
    if (!writing) return fuse_native_open(path, info);
    syncmesh_order_lock(ft);
    int res = fuse_native_open(path, info);
    uv_mutex_unlock(&ft->syncmesh_order);
    return res;
  }
  if (!writing) {
    /* O_NOFOLLOW: the kernel opens no symlink through FUSE; one here was installed since its lookup */
    int fd = open(real, (info->flags & SYNCMESH_KEPT_OPEN_FLAGS) | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return -errno;
    info->fh = fd;
    syncmesh_set_quiet(ft, fd);
    return 0;
  }
  syncmesh_order_lock(ft);
  int res = 0;
  int fd = open(real, (info->flags & SYNCMESH_KEPT_OPEN_FLAGS) | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    res = -errno;
  } else {
    info->fh = fd;
    struct syncmesh_event *e = syncmesh_event_new(ft, SYNCMESH_EV_OPEN, path, fd);
    if (e != NULL) {
      syncmesh_event_push(ft, e);
    } else {
      syncmesh_count_fallback(ft);
      fuse_thread_locals_t *l = syncmesh_pre_set(fd);
      res = syncmesh_pre_clear(l, fuse_native_open(path, info));
      if (res != 0) close(fd);
    }
  }
  uv_mutex_unlock(&ft->syncmesh_order);
  return res;
}

/* release: the ranges written go to JS in a notification (JS forgets the handle and reports the writes),
   then close(2) here, both under the order lock. A descriptor opened read-only here never reached JS, nor
   does its release. (Not decided by the release's flags: a file created with O_RDONLY|O_CREAT has a handle
   in JS.) Without room in the queue: JS is called first and takes the ranges itself, as at level 4. */
static int syncmesh_release (const char *path, struct fuse_file_info *info) {
  fuse_thread_t *ft = syncmesh_ft();
  if (info == NULL || info->fh == 0) {
    syncmesh_order_lock(ft);
    int res = fuse_native_release(path, info);
    uv_mutex_unlock(&ft->syncmesh_order);
    return res;
  }
  int fd = (int) info->fh;
  if (syncmesh_is_quiet(ft, fd)) {
    struct syncmesh_ranges left;
    syncmesh_move_ranges(ft, fd, &left);
    free(left.v);
    close(fd);
    return 0;
  }
  syncmesh_order_lock(ft);
  int res = 0;
  struct syncmesh_event *e = syncmesh_event_new(ft, SYNCMESH_EV_RELEASE, path, fd);
  if (e != NULL) {
    syncmesh_move_ranges(ft, fd, &e->ranges);
    syncmesh_event_push(ft, e);
  } else {
    syncmesh_count_fallback(ft);
    res = fuse_native_release(path, info);
    struct syncmesh_ranges left;
    syncmesh_move_ranges(ft, fd, &left);
    free(left.v); /* nothing stays behind for the next file to get this descriptor */
  }
  close(fd);
  uv_mutex_unlock(&ft->syncmesh_order);
  return res;
}

/* syncmesh_take_events(thread): what was queued since the last take, in order, packed into four values
   (level 6; a few allocations per take instead of several per notification, which cost JS more than
   handling them): [fallbacks, meta, paths, ranges], or undefined when nothing was queued and nothing fell back.
   fallbacks counts the notifications that could not be queued since the last take; meta is an Int32Array of
   three entries per notification: op, descriptor, and for release how many [start, end) pairs of ranges
   are its own (taken in order from ranges), -1 when they could not all be kept (the whole file counts), 0
   when nothing was written; paths is the notifications' paths joined with NUL (no path has one); ranges
   is a Float64Array of all the pairs. */
NAPI_METHOD(syncmesh_take_events) {
  NAPI_ARGV(1)
  NAPI_ARGV_BUFFER_CAST(fuse_thread_t *, ft, 0)
  napi_value out;
  napi_get_undefined(env, &out);
  if (ft_len < sizeof(fuse_thread_t) || ft->syncmesh_data_len == 0 || ft->syncmesh_queue_max == 0) return out;
  uv_mutex_lock(&ft->syncmesh_queue_mut);
  struct syncmesh_event *head = ft->syncmesh_head;
  struct syncmesh_event *tail = ft->syncmesh_tail;
  size_t n = ft->syncmesh_queued;
  uint64_t fallbacks = ft->syncmesh_sync_fallbacks;
  ft->syncmesh_head = ft->syncmesh_tail = NULL;
  ft->syncmesh_queued = 0;
  ft->syncmesh_sync_fallbacks = 0;
  /* level 6: a take that finds notifications leaves the wake-up off, JS takes the queue again shortly
     anyway (passthrough.ts, POLL_MS); once a take finds it empty, the next notification wakes JS */
  ft->syncmesh_wake_pending = n > 0;
  uv_mutex_unlock(&ft->syncmesh_queue_mut);
  if (n == 0 && fallbacks == 0) return out; /* the common case at the start of a request JS serves: nothing to build */
  size_t bytes = 0, pairs = 0;
  for (struct syncmesh_event *e = head; e != NULL; e = e->next) {
    bytes += strlen(e->path) + 1;
    if (!e->ranges.unknown) pairs += e->ranges.n;
  }
  char *joined = (char *) malloc(bytes + 1);
  napi_value vals[4], ab;
  void *meta = NULL, *ranges = NULL;
  int ok = joined != NULL &&
    napi_create_arraybuffer(env, 3 * n * sizeof(int32_t), &meta, &ab) == napi_ok &&
    napi_create_typedarray(env, napi_int32_array, 3 * n, ab, 0, &vals[1]) == napi_ok &&
    napi_create_arraybuffer(env, 2 * pairs * sizeof(double), &ranges, &ab) == napi_ok &&
    napi_create_typedarray(env, napi_float64_array, 2 * pairs, ab, 0, &vals[3]) == napi_ok;
  if (!ok) {
    /* no memory: the notifications go back to the head of the queue, in order, and JS is woken to try again */
    free(joined);
    uv_mutex_lock(&ft->syncmesh_queue_mut);
    if (head != NULL) {
      tail->next = ft->syncmesh_head;
      if (ft->syncmesh_tail == NULL) ft->syncmesh_tail = tail;
      ft->syncmesh_head = head;
      ft->syncmesh_queued += n;
    }
    ft->syncmesh_sync_fallbacks += fallbacks;
    ft->syncmesh_wake_pending = 1;
    uv_mutex_unlock(&ft->syncmesh_queue_mut);
    uv_async_send(&ft->syncmesh_wake);
    return out;
  }
  int32_t *m = (int32_t *) meta;
  double *r = (double *) ranges;
  size_t at = 0;
  struct syncmesh_event *e = head;
  while (e != NULL) {
    struct syncmesh_event *next = e->next;
    size_t pl = strlen(e->path);
    memcpy(joined + at, e->path, pl);
    at += pl;
    joined[at++] = '\\0';
    *m++ = e->op;
    *m++ = e->fd;
    if (e->ranges.unknown) {
      *m++ = -1;
    } else {
      *m++ = (int32_t) e->ranges.n; /* at most SYNCMESH_MAX_PAIRS */
      for (size_t k = 0; k < e->ranges.n * 2; k++) *r++ = (double) e->ranges.v[k];
    }
    free(e->ranges.v);
    free(e);
    e = next;
  }
  napi_create_double(env, (double) fallbacks, &vals[0]);
  if (napi_create_string_utf8(env, joined, at > 0 ? at - 1 : 0, &vals[2]) != napi_ok) napi_get_undefined(env, &vals[2]);
  free(joined);
  napi_create_array_with_length(env, 4, &out);
  for (uint32_t i = 0; i < 4; i++) napi_set_element(env, out, i, vals[i]);
  return out;
}

/* syncmesh_order_try(thread): 1 when JS now holds the order lock (it must call syncmesh_order_release soon,
   from the same synchronous step), 0 when a FUSE thread holds it (maybe waiting for JS: JS must not wait
   for it), -1 when this mount has no such lock (no fast paths). For the puller's last check and rename in
   the data folder: no mutation through the mount can land between the two. */
NAPI_METHOD(syncmesh_order_try) {
  NAPI_ARGV(1)
  NAPI_ARGV_BUFFER_CAST(fuse_thread_t *, ft, 0)
  int res = -1;
  if (ft_len >= sizeof(fuse_thread_t) && ft->syncmesh_data_len > 0) res = uv_mutex_trylock(&ft->syncmesh_order) == 0 ? 1 : 0;
  NAPI_RETURN_INT32(res)
}

NAPI_METHOD(syncmesh_order_release) {
  NAPI_ARGV(1)
  NAPI_ARGV_BUFFER_CAST(fuse_thread_t *, ft, 0)
  if (ft_len >= sizeof(fuse_thread_t) && ft->syncmesh_data_len > 0) uv_mutex_unlock(&ft->syncmesh_order);
  return NULL;
}

/* Mutating operations JS serves: in the FUSE thread under the order lock for the whole call into JS. */
#define SYNCMESH_ORDERED(name, signature, args) \\
  static int syncmesh_ordered_##name signature { \\
    fuse_thread_t *ft = syncmesh_ft(); \\
    syncmesh_handoff(); /* it waits for JS */ \\
    uv_mutex_lock(&ft->syncmesh_order); \\
    int res = fuse_native_##name args; \\
    uv_mutex_unlock(&ft->syncmesh_order); \\
    return res; \\
  }
SYNCMESH_ORDERED(truncate, (const char *path, off_t size), (path, size))
SYNCMESH_ORDERED(ftruncate, (const char *path, off_t size, struct fuse_file_info *info), (path, size, info))
SYNCMESH_ORDERED(fsync, (const char *path, int datasync, struct fuse_file_info *info), (path, datasync, info))
SYNCMESH_ORDERED(chown, (const char *path, uid_t uid, gid_t gid), (path, uid, gid))
SYNCMESH_ORDERED(chmod, (const char *path, mode_t mode), (path, mode))
SYNCMESH_ORDERED(mknod, (const char *path, mode_t mode, dev_t dev), (path, mode, dev))
SYNCMESH_ORDERED(setxattr, (const char *path, const char *name, const char *value, size_t size, int flags), (path, name, value, size, flags))
SYNCMESH_ORDERED(removexattr, (const char *path, const char *name), (path, name))
SYNCMESH_ORDERED(utimens, (const char *path, const struct timespec tv[2]), (path, tv))
SYNCMESH_ORDERED(unlink, (const char *path), (path))
SYNCMESH_ORDERED(rmdir, (const char *path), (path))
SYNCMESH_ORDERED(rename, (const char *path, const char *dest), (path, dest))
SYNCMESH_ORDERED(link, (const char *path, const char *dest), (path, dest))
SYNCMESH_ORDERED(symlink, (const char *path, const char *dest), (path, dest))
SYNCMESH_ORDERED(mkdir, (const char *path, mode_t mode), (path, mode))
/* ---- end of ${MARK} fast paths ---- */

`

/** Mutating operations JS serves, called under the order lock (syncmesh_ordered_*). */
// (not fsync: it changes nothing a peer sees, and held under the lock, one slow fsync held up every mutation
// on the mount; the handle's create or open was taken from the queue when the request was dispatched)
const ORDERED_OPS = ['truncate', 'ftruncate', 'chown', 'chmod', 'mknod', 'setxattr', 'removexattr', 'utimens', 'unlink', 'rmdir', 'rename', 'link', 'symlink', 'mkdir']

/** Adds JS argument `argIndex` (syncmesh_pre_arg) to a FUSE method's callback: `callbackArgs` goes up by one. */
function addPreArg (s, name, argIndex, afterLine) {
  const head = `FUSE_METHOD(${name}, `
  const start = s.indexOf(head)
  if (start === -1 || s.indexOf(head, start + 1) !== -1) throw new PatchError(`${name} method not found once`)
  const end = s.indexOf('\n})\n', start)
  let block = s.slice(start, end)
  const m = /^FUSE_METHOD\((\w+), (\d+), /.exec(block)
  if (m === null || Number(m[2]) + 1 !== argIndex - 1) throw new PatchError(`${name} method has an unexpected argument count`)
  block = block.replace(m[0], `FUSE_METHOD(${name}, ${Number(m[2]) + 1}, `)
  block = edit(block, afterLine, a => `${a}  syncmesh_pre_arg(env, l, &(argv[${argIndex}])); /* ${MARK} */\n`)
  return s.slice(0, start) + block + s.slice(end)
}

/** utimens as patched: both timespecs as they came (seconds: a JS number; nanoseconds: uint32, maybe UTIME_NOW/UTIME_OMIT). */
const UTIMENS = `FUSE_METHOD_VOID(utimens, 5, 0, (const char *path, const struct timespec tv[2]), {
  /* ${MARK}: both timespecs as they came */
  l->path = path;
  l->syncmesh_times[0] = tv[0];
  l->syncmesh_times[1] = tv[1];
}, {
  napi_create_string_utf8(env, l->path, NAPI_AUTO_LENGTH, &(argv[2]));
  napi_create_int64(env, (int64_t) l->syncmesh_times[0].tv_sec, &(argv[3]));
  napi_create_uint32(env, (uint32_t) l->syncmesh_times[0].tv_nsec, &(argv[4]));
  napi_create_int64(env, (int64_t) l->syncmesh_times[1].tv_sec, &(argv[5]));
  napi_create_uint32(env, (uint32_t) l->syncmesh_times[1].tv_nsec, &(argv[6]));
})`

class PatchError extends Error {}

/** Replaces the single occurrence of `anchor` (exactly `count` occurrences when given) with `replace(anchor)`. */
function edit (src, anchor, replace, count = 1) {
  const parts = src.split(anchor)
  if (parts.length - 1 !== count) throw new PatchError(`anchor ${JSON.stringify(anchor.slice(0, 60))} found ${parts.length - 1} times, expected ${count}`)
  return parts.join(replace(anchor))
}

/** The patched fuse-native.c from the pristine one; throws PatchError when fuse-native's source does not have the expected shape. */
function patchSource (orig) {
  let s = orig
  // 1. a place in the per-thread locals for the two timespecs
  s = edit(s, '} fuse_thread_locals_t;', a => `  struct timespec syncmesh_times[2]; /* ${MARK} */\n${a}`)
  // 2. our helpers, before the FUSE methods
  s = edit(s, '\n// Methods\n', a => `\n${HELPERS}${a.slice(1)}`)
  // 3. getattr and fgetattr take sub-millisecond times
  s = edit(s, '  populate_stat(ints, l->stat);\n', a => `${a}  syncmesh_stat_ns(ints, ints_len, l->stat); /* ${MARK} */\n`, 2)
  // 4. utimens: replace fuse-native's method (from its head to the end of its macro call)
  const head = 'FUSE_METHOD_VOID(utimens,'
  const start = s.indexOf(head)
  if (start === -1 || s.indexOf(head, start + 1) !== -1) throw new PatchError('utimens method not found once')
  const end = s.indexOf('\n})\n', start)
  if (end === -1 || !s.slice(start, end).includes('timespec_to_uint64')) throw new PatchError('utimens method has an unexpected shape')
  s = s.slice(0, start) + UTIMENS + s.slice(end + 3)
  // 5. libfuse2 may call utimens with one time omitted
  s = edit(s, 'if (implemented[op_utimens]) ops.utimens = fuse_native_utimens;', a => `${a}\n  ops.flag_utime_omit_ok = 1; /* ${MARK} */`)
  // 6. fast paths: per-mount fields, the functions, and fuse_native_mount using them when asked to
  s = edit(s, '} fuse_thread_t;', a => `${THREAD_FIELDS}${a}`)
  s = edit(s, '\n// Top-level dispatcher\n', a => `\n${FAST_PATHS}${a.slice(1)}`)
  s = edit(s, '  if (implemented[op_init]) ops.init = fuse_native_init;\n', a => `${a}  syncmesh_setup(env, argv[3], ft); /* ${MARK} */\n  if (ft->syncmesh_data_len > 0) {\n    ops.getattr = syncmesh_getattr;\n    if (ops.fgetattr) ops.fgetattr = syncmesh_fgetattr;\n    if (ops.getxattr) ops.getxattr = syncmesh_getxattr;\n  }\n`)
  // 7. create and open tell JS the descriptor the FUSE thread opened; write, read, release use the fast paths
  s = edit(s, '} fuse_thread_locals_t;', a => `${LOCALS_FIELDS}${a}`)
  s = addPreArg(s, 'create', 4, '  napi_create_uint32(env, l->mode, &(argv[3]));\n')
  s = addPreArg(s, 'open', 4, '    napi_create_uint32(env, 0, &(argv[3]));\n  }\n')
  s = edit(s, '    if (ops.getxattr) ops.getxattr = syncmesh_getxattr;\n', a => `${a}    if (ops.create) ops.create = syncmesh_create;\n    if (ops.open) ops.open = syncmesh_open;\n    if (ops.write) ops.write = syncmesh_write;\n    if (ops.read) ops.read = syncmesh_read;\n    if (ops.release) ops.release = syncmesh_release;\n${ORDERED_OPS.map(n => `    if (ops.${n}) ops.${n} = syncmesh_ordered_${n};\n`).join('')}`)
  // 8. level 6: the request loop (syncmesh_loop_run) hands its lead over before every call into JS
  s = edit(s, '#define FUSE_NATIVE_HANDLER(name, blk)\\\n  fuse_thread_locals_t *l = get_thread_locals();\\\n', a => a.replace('\\\n', `\\\n  syncmesh_handoff(); /* ${MARK}: it waits for JS */\\\n`))
  s = edit(s, '  fuse_loop_mt(ft->fuse);\n', () => `  syncmesh_serve(ft); /* ${MARK}: in place of fuse_loop_mt(ft->fuse) */\n`)
  // 9. exports: the patch level (the marker Syncmesh checks at run time) and utimensat
  s = edit(s, '  NAPI_EXPORT_SIZEOF(fuse_thread_t)\n', a => `${a}  NAPI_EXPORT_UINT32(syncmesh_patch) /* ${MARK} */\n  NAPI_EXPORT_FUNCTION(syncmesh_utimensat)\n  NAPI_EXPORT_FUNCTION(syncmesh_take_ranges)\n  NAPI_EXPORT_FUNCTION(syncmesh_take_events)\n  NAPI_EXPORT_FUNCTION(syncmesh_order_try)\n  NAPI_EXPORT_FUNCTION(syncmesh_order_release)\n`)
  return s
}

// ---- finding the tools ------------------------------------------------------------------------------

function onPath (name) {
  for (const d of (process.env.PATH ?? '').split(':')) {
    if (d === '') continue
    const p = path.join(d, name)
    try {
      fs.accessSync(p, fs.constants.X_OK)
      return p
    } catch {}
  }
  return null
}

/** node-gyp's entry script: npm's (npm_config_node_gyp in npm scripts, else beside the npm on PATH), else a node-gyp on PATH. */
function findNodeGyp () {
  const env = process.env.npm_config_node_gyp
  if (env !== undefined && env !== '' && fs.existsSync(env)) return { cmd: process.execPath, args: [env] }
  const npm = onPath('npm')
  if (npm !== null) {
    try {
      const cli = fs.realpathSync(npm) // .../npm/bin/npm-cli.js
      const gyp = path.join(path.dirname(path.dirname(cli)), 'node_modules/node-gyp/bin/node-gyp.js')
      if (fs.existsSync(gyp)) return { cmd: process.execPath, args: [gyp] }
    } catch {}
  }
  const bin = onPath('node-gyp')
  return bin === null ? null : { cmd: bin, args: [] }
}

/** Node headers to build against: npm's nodedir, else a node installation that has include/node (N-API: any version does). */
function findNodeDir () {
  const candidates = [process.env.npm_config_nodedir, path.resolve(path.dirname(process.execPath), '..'), '/usr', '/usr/local']
  for (const d of candidates) {
    if (d !== undefined && d !== '' && fs.existsSync(path.join(d, 'include/node/node_api.h'))) return d
  }
  return null
}

function missingTools () {
  const need = [
    ['make', 'make'],
    [process.env.CC ?? 'cc', 'a C compiler'],
    [process.env.CXX ?? 'g++', 'a C++ compiler (the linker node-gyp uses)'],
    ['python3', 'python3']
  ]
  return need.filter(([cmd]) => onPath(cmd.split(' ')[0]) === null).map(([cmd, what]) => `${what} (${cmd})`)
}

// ---- build ----------------------------------------------------------------------------------------

function run (cmd, args, cwd, logFile, timeoutMs) {
  return new Promise(resolve => {
    const log = fs.openSync(logFile, 'a')
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', log, log], env: process.env })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', err => { clearTimeout(timer); fs.closeSync(log); resolve({ ok: false, why: err.message }) })
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      fs.closeSync(log)
      resolve({ ok: code === 0, why: signal !== null ? `killed by ${signal}` : `exit code ${code}` })
    })
  })
}

/** Loads the built addon in a child process: its patch level, or why it does not load. */
function probe (addon) {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(require(process.argv[1]).syncmesh_patch))', addon], { encoding: 'utf8', timeout: 30000 })
  if (r.status === 0) return { level: Number(r.stdout) }
  return { error: (r.stderr || r.error?.message || 'no output').split('\n').find(l => /error/i.test(l)) ?? r.stderr.split('\n')[0] }
}

/** First compiler or gyp error line of a build log. */
function firstError (logFile) {
  try {
    const lines = fs.readFileSync(logFile, 'utf8').split('\n')
    return lines.find(l => /error:|not found|No such file/i.test(l) && !/^gyp info/.test(l))?.trim() ?? lines.filter(Boolean).slice(-1)[0]?.trim()
  } catch {
    return undefined
  }
}

async function main () {
  if (process.env.SYNCMESH_SKIP_FUSE_BUILD === '1') { fallback('SYNCMESH_SKIP_FUSE_BUILD=1: patched fuse-native not built'); return }
  if (process.platform !== 'linux') { say(`fuse-native patch is for Linux only (${process.platform}): stock build kept`); return }
  let fuseDir
  try {
    fuseDir = path.dirname(createRequire(path.join(ROOT, 'package.json')).resolve('fuse-native/package.json'))
  } catch {
    say('fuse-native is not installed: nothing to build')
    return
  }
  const srcFile = path.join(fuseDir, 'fuse-native.c')
  const origFile = srcFile + '.orig'
  const buildDir = path.join(fuseDir, 'build')
  const addon = path.join(buildDir, 'Release/fuse.node')
  const stampFile = path.join(buildDir, 'syncmesh-patch.json')
  const logFile = path.join(fuseDir, 'syncmesh-build.log')

  /** Removes our build so that node-gyp-build loads the prebuild. */
  const dropBuild = () => fs.rmSync(buildDir, { recursive: true, force: true })

  // the pristine source: kept once as .orig, patched from there on every run
  let orig
  if (fs.existsSync(origFile)) orig = fs.readFileSync(origFile, 'utf8')
  else {
    orig = fs.readFileSync(srcFile, 'utf8')
    if (orig.includes(MARK)) { dropBuild(); fallback(`${srcFile} is patched but ${origFile} is missing (reinstall fuse-native)`); return }
  }
  let patched
  try {
    patched = patchSource(orig)
  } catch (err) {
    if (!(err instanceof PatchError)) throw err
    dropBuild()
    fallback(`fuse-native's source does not take the patch (${err.message}; version ${JSON.parse(fs.readFileSync(path.join(fuseDir, 'package.json'), 'utf8')).version})`)
    return
  }
  const nodeDir = findNodeDir()
  const stamp = JSON.stringify({ level: PATCH_LEVEL, source: createHash('sha256').update(patched).digest('hex'), nodeDir })

  if (!force && fs.existsSync(addon) && fs.existsSync(stampFile) && fs.readFileSync(stampFile, 'utf8') === stamp && fs.readFileSync(srcFile, 'utf8') === patched) {
    const p = probe(addon)
    if (p.level === PATCH_LEVEL || /libfuse\.so/.test(p.error ?? '')) { say(`fuse-native: patched build (syncmesh patch ${PATCH_LEVEL}) is up to date`); return }
  }

  const missing = missingTools()
  if (missing.length > 0) { dropBuild(); fallback(`cannot build the patched fuse-native: missing ${missing.join(', ')}`); return }
  const gyp = findNodeGyp()
  if (gyp === null) { dropBuild(); fallback('cannot build the patched fuse-native: node-gyp not found (npm bundles one)'); return }

  if (!fs.existsSync(origFile)) fs.writeFileSync(origFile, orig)
  fs.writeFileSync(srcFile, patched)
  fs.writeFileSync(logFile, '')
  const args = [...gyp.args, 'rebuild', ...(nodeDir !== null ? [`--nodedir=${nodeDir}`] : [])]
  const r = await run(gyp.cmd, args, fuseDir, logFile, 10 * 60 * 1000)
  if (!r.ok) {
    dropBuild()
    const e = firstError(logFile)
    fallback(`building the patched fuse-native failed (${r.why}${e !== undefined ? `: ${e}` : ''}; log: ${logFile})`)
    return
  }
  const p = probe(addon)
  if (p.level !== PATCH_LEVEL && !/libfuse\.so/.test(p.error ?? '')) {
    dropBuild()
    fallback(`the patched fuse-native does not load (${p.error ?? `patch level ${String(p.level)}`}; log: ${logFile})`)
    return
  }
  fs.writeFileSync(stampFile, stamp)
  say(`fuse-native: built with the syncmesh patch ${PATCH_LEVEL} (utimens with UTIME_OMIT/UTIME_NOW, ns times, plain paths served in C)${p.level === PATCH_LEVEL ? '' : ' (it loads once libfuse2 is installed: apt-get install -y libfuse2 fuse)'}`)
}

try {
  await main()
} catch (err) {
  // never fail the install
  fallback(`building the patched fuse-native failed: ${err instanceof Error ? err.message : String(err)}`)
}
