/* Media phase of bench/concurrent_media.py's load generator, in C, so the
 * generator stays light next to the server on a small machine.
 *
 * Built by concurrent_media.py at bench time (cc -O2) into a temp dir.  The
 * Python side sets the calls up (SIP) and hands over the bound RTP sockets as
 * inherited file descriptors.  The packets are the Python generator's: a 12-byte
 * RTP header (PT 0), then 160 bytes of PCMU whose first 34 bytes carry
 * (magic 0xB1, stream, seq, send time ns CLOCK_MONOTONIC) as big-endian
 * fields, one nibble per byte as mu-law codes 0x10..0x1F, padded with 0xFF.
 *
 * stdin:  start_ns ticks drain_ns n
 *         n lines: fd ipv4 port stream rtp_seq ts ssrc
 * argv:   rtpgen LATENCY_FILE LATE_FILE     (float32 ms, native order)
 * stdout: "sent received dup bad cpu_s" then n lines "sent received",
 *         then up to 20 lines "stream seq" of lost packets.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PERIOD_NS 20000000LL
#define PAYLOAD 160
#define MAGIC 0xB1

typedef struct {
    int fd;
    struct sockaddr_in to;
    uint32_t stream, seq, ts, ssrc;
    uint16_t rtp_seq;
    long sent, received;
    uint8_t *seen;
} leg_t;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void put_nibbles(uint8_t *out, const uint8_t *raw, int n) {
    for (int i = 0; i < n; i++) {
        out[2 * i] = 0x10 | (raw[i] >> 4);
        out[2 * i + 1] = 0x10 | (raw[i] & 0x0F);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: rtpgen LATFILE LATEFILE < spec\n"); return 2; }
    long long start_ns, drain_ns; long ticks; int n;
    if (scanf("%lld %ld %lld %d", &start_ns, &ticks, &drain_ns, &n) != 4 || n <= 0) {
        fprintf(stderr, "bad header\n"); return 2;
    }
    leg_t *legs = calloc(n, sizeof *legs);
    int maxfd = 0;
    for (int i = 0; i < n; i++) {
        char ip[64]; int port; unsigned stream, rs, ts, ssrc;
        if (scanf("%d %63s %d %u %u %u %u", &legs[i].fd, ip, &port, &stream, &rs, &ts, &ssrc) != 7) {
            fprintf(stderr, "bad leg line %d\n", i); return 2;
        }
        legs[i].to.sin_family = AF_INET;
        legs[i].to.sin_port = htons(port);
        inet_pton(AF_INET, ip, &legs[i].to.sin_addr);
        legs[i].stream = stream; legs[i].rtp_seq = rs; legs[i].ts = ts; legs[i].ssrc = ssrc;
        legs[i].seen = calloc((ticks + 7) / 8 + 1, 1);
        if (legs[i].fd > maxfd) maxfd = legs[i].fd;
    }
    int *slot_of_fd = malloc(sizeof(int) * (maxfd + 1));
    for (int i = 0; i <= maxfd; i++) slot_of_fd[i] = -1;
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, legs[i].fd, &ev);
        slot_of_fd[legs[i].fd] = i;
    }
    long cap = (long)n * ticks;
    float *lat = malloc(sizeof(float) * (cap + 1));
    float *late = malloc(sizeof(float) * (cap + 1));
    long n_lat = 0, n_late = 0, dup = 0, bad = 0;
    int64_t *offs = malloc(sizeof(int64_t) * n);
    for (int i = 0; i < n; i++) offs[i] = PERIOD_NS * i / n;

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    uint8_t pkt[12 + PAYLOAD];
    memset(pkt + 12, 0xFF, PAYLOAD);
    uint8_t buf[2048];
    struct epoll_event evs[256];
    long k = 0; int i = 0;
    int64_t end_ns = start_ns + ticks * PERIOD_NS + drain_ns;
    for (;;) {
        int64_t now = now_ns();
        while (k < ticks) {
            int64_t due = start_ns + k * PERIOD_NS + offs[i];
            if (due > now) break;
            leg_t *l = &legs[i];
            pkt[0] = 0x80; pkt[1] = 0;
            uint16_t s16 = htons(l->rtp_seq); memcpy(pkt + 2, &s16, 2);
            uint32_t v = htonl(l->ts); memcpy(pkt + 4, &v, 4);
            v = htonl(l->ssrc); memcpy(pkt + 8, &v, 4);
            uint8_t raw[17];
            raw[0] = MAGIC;
            v = htonl(l->stream); memcpy(raw + 1, &v, 4);
            v = htonl(l->seq); memcpy(raw + 5, &v, 4);
            uint64_t t = (uint64_t)now;
            for (int b = 0; b < 8; b++) raw[9 + b] = (uint8_t)(t >> (56 - 8 * b));
            put_nibbles(pkt + 12, raw, 17);
            if (sendto(l->fd, pkt, sizeof pkt, 0, (struct sockaddr *)&l->to, sizeof l->to) >= 0)
                l->sent++;
            l->seq++; l->rtp_seq++; l->ts += 160;
            late[n_late++] = (float)((now - due) / 1e6);
            if (++i == n) { i = 0; k++; }
            now = now_ns();
        }
        if (k >= ticks && now >= end_ns) break;
        int64_t nxt = k < ticks ? start_ns + k * PERIOD_NS + offs[i] : end_ns;
        int64_t wait_ns = nxt - now;
        if (wait_ns < 0) wait_ns = 0;
        int ms = (int)((wait_ns + 999999) / 1000000);   /* like Python's epoll.poll: round up */
        if (ms > 50) ms = 50;
        int ne = epoll_wait(ep, evs, 256, ms);
        for (int e = 0; e < ne; e++) {
            leg_t *l = &legs[evs[e].data.u32];
            for (;;) {
                ssize_t r = recv(l->fd, buf, sizeof buf, MSG_DONTWAIT);
                if (r < 0) break;
                int64_t tr = now_ns();
                if (r <= 12 + 36) { bad++; continue; }
                uint8_t raw[17]; int ok = 1;
                for (int b = 0; b < 17; b++) {
                    uint8_t hi = buf[12 + 2 * b], lo = buf[13 + 2 * b];
                    if ((hi & 0xF0) != 0x10 || (lo & 0xF0) != 0x10) { ok = 0; break; }
                    raw[b] = (uint8_t)(((hi & 0x0F) << 4) | (lo & 0x0F));
                }
                if (!ok || raw[0] != MAGIC) { bad++; continue; }
                uint32_t stream, seq; memcpy(&stream, raw + 1, 4); memcpy(&seq, raw + 5, 4);
                stream = ntohl(stream); seq = ntohl(seq);
                uint64_t ts = 0;
                for (int b = 0; b < 8; b++) ts = (ts << 8) | raw[9 + b];
                /* the echo comes back on the stream's own socket */
                leg_t *s = l;
                if (s->stream != stream) {
                    s = NULL;
                    for (int q = 0; q < n; q++) if (legs[q].stream == stream) { s = &legs[q]; break; }
                    if (!s) { bad++; continue; }
                }
                if (seq >= (uint32_t)ticks) { bad++; continue; }
                if (s->seen[seq >> 3] & (1 << (seq & 7))) { dup++; continue; }
                s->seen[seq >> 3] |= (uint8_t)(1 << (seq & 7));
                s->received++;
                if (n_lat < cap) lat[n_lat++] = (float)((tr - (int64_t)ts) / 1e6);
            }
        }
    }
    getrusage(RUSAGE_SELF, &ru1);
    double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec)
               + ((ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec)) / 1e6;
    FILE *f = fopen(argv[1], "wb"); fwrite(lat, sizeof(float), n_lat, f); fclose(f);
    f = fopen(argv[2], "wb"); fwrite(late, sizeof(float), n_late, f); fclose(f);
    long sent = 0, recvd = 0;
    for (int q = 0; q < n; q++) { sent += legs[q].sent; recvd += legs[q].received; }
    printf("%ld %ld %ld %ld %.6f\n", sent, recvd, dup, bad, cpu);
    for (int q = 0; q < n; q++) printf("%ld %ld\n", legs[q].sent, legs[q].received);
    int shown = 0;
    for (int q = 0; q < n && shown < 20; q++)
        for (uint32_t s = 0; s < legs[q].seq && shown < 20; s++)
            if (!(legs[q].seen[s >> 3] & (1 << (s & 7)))) { printf("%u %u\n", legs[q].stream, s); shown++; }
    return 0;
}
