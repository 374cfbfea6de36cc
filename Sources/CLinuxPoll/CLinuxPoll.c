#include "CLinuxPoll.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>

const uint32_t convoy_poll_in = EPOLLIN;
const uint32_t convoy_poll_out = EPOLLOUT;
const uint32_t convoy_poll_rdhup = EPOLLRDHUP;
const uint32_t convoy_poll_err = EPOLLERR;
const uint32_t convoy_poll_hup = EPOLLHUP;
const uint32_t convoy_poll_oneshot = EPOLLONESHOT;

int convoy_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int convoy_eventfd_create(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

int convoy_epoll_watch(int epoll, int fd, uint32_t events, int add) {
    struct epoll_event event = {.events = events, .data.fd = fd};
    return epoll_ctl(epoll, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &event);
}

int convoy_epoll_wait(int epoll, int *fds, uint32_t *events, int max, int timeout_ms) {
    struct epoll_event ready[64];
    if (max > 64) max = 64;
    int count = epoll_wait(epoll, ready, max, timeout_ms);
    for (int i = 0; i < count; i++) {
        fds[i] = ready[i].data.fd;
        events[i] = ready[i].events;
    }
    return count;
}
