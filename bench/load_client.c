/* Load client for the Postfix policy benchmarks: one thread per connection, blocking loopback
 * sockets, each thread sends its requests one after another and waits for every answer (as
 * Postfix smtpd processes do). Compiled so that the client is not what limits the figures.
 *
 *   cc -O2 -pthread -o load_client bench/load_client.c
 *   load_client PORT CONNECTIONS REQUESTS_PER_CONNECTION REQUEST_FILE
 *
 * REQUEST_FILE holds requests, each ending in an empty line ("\n\n"); connection c sends
 * request (c + i) mod count as its i-th. Prints one line of key=value figures, including the
 * client's own CPU seconds (user + system, all threads), so a reader can see how close the
 * client came to a core. Exits 1 on any socket error or an answer without "action=".
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port, conns, per_conn, n_req;
static char **reqs;
static size_t *req_len;
static double *lat;       /* conns * per_conn latencies, seconds */
static int failed;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *run(void *arg) {
    int c = (int)(long)arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { failed = 1; return NULL; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[4096];
    for (int i = 0; i < per_conn; i++) {
        int r = (c + i) % n_req;
        double t0 = now();
        size_t off = 0;
        while (off < req_len[r]) {
            ssize_t w = write(fd, reqs[r] + off, req_len[r] - off);
            if (w <= 0) { failed = 1; close(fd); return NULL; }
            off += (size_t)w;
        }
        size_t got = 0;
        for (;;) {  /* an answer is one or more lines ending in an empty line */
            ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
            if (n <= 0) { failed = 1; close(fd); return NULL; }
            got += (size_t)n;
            buf[got] = 0;
            if (got >= 2 && buf[got - 1] == '\n' && buf[got - 2] == '\n') break;
            if (got >= sizeof buf - 1) { failed = 1; close(fd); return NULL; }
        }
        if (strncmp(buf, "action=", 7) != 0) { failed = 1; close(fd); return NULL; }
        lat[(size_t)c * per_conn + i] = now() - t0;
    }
    close(fd);
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s PORT CONNECTIONS REQUESTS_PER_CONNECTION REQUEST_FILE\n", argv[0]);
        return 2;
    }
    port = atoi(argv[1]); conns = atoi(argv[2]); per_conn = atoi(argv[3]);
    FILE *f = fopen(argv[4], "rb");
    if (!f || port <= 0 || conns <= 0 || per_conn <= 0) { fprintf(stderr, "bad arguments\n"); return 2; }
    fseek(f, 0, SEEK_END); long size = ftell(f); rewind(f);
    char *all = malloc((size_t)size + 1);
    if (fread(all, 1, (size_t)size, f) != (size_t)size) { fprintf(stderr, "short read\n"); return 2; }
    all[size] = 0; fclose(f);
    reqs = malloc(sizeof *reqs * (size_t)(size / 2 + 1));
    req_len = malloc(sizeof *req_len * (size_t)(size / 2 + 1));
    for (char *p = all; *p;) {
        char *end = strstr(p, "\n\n");
        if (!end) break;
        reqs[n_req] = p; req_len[n_req] = (size_t)(end + 2 - p); n_req++;
        p = end + 2;
    }
    if (n_req == 0) { fprintf(stderr, "no requests in %s\n", argv[4]); return 2; }
    lat = calloc((size_t)conns * per_conn, sizeof *lat);
    pthread_t *th = malloc(sizeof *th * (size_t)conns);
    double t0 = now();
    for (int c = 0; c < conns; c++) pthread_create(&th[c], NULL, run, (void *)(long)c);
    for (int c = 0; c < conns; c++) pthread_join(th[c], NULL);
    double wall = now() - t0;
    if (failed) { fprintf(stderr, "load_client: a connection failed\n"); return 1; }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    size_t total = (size_t)conns * per_conn;
    qsort(lat, total, sizeof *lat, cmp);
    printf("requests=%zu wall_s=%.4f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f "
           "p999_ms=%.3f client_cpu_s=%.4f\n", total, wall, total / wall, lat[total / 2] * 1e3,
           lat[(size_t)(total * 0.9)] * 1e3, lat[(size_t)(total * 0.99)] * 1e3,
           lat[(size_t)(total * 0.999)] * 1e3, cpu);
    return 0;
}
