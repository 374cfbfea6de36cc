// epoll and eventfd for ConvoyIO's readiness poller: Swift's Glibc module does not export
// <sys/epoll.h> or <sys/eventfd.h>, and `struct epoll_event` is packed on x86_64, so the poller
// goes through these two small wrappers instead of the struct.
#ifndef CLINUXPOLL_H
#define CLINUXPOLL_H

#include <stdint.h>

/// What the poller asks for and is told (EPOLLIN and so on).
extern const uint32_t convoy_poll_in;
extern const uint32_t convoy_poll_out;
extern const uint32_t convoy_poll_rdhup;
extern const uint32_t convoy_poll_err;
extern const uint32_t convoy_poll_hup;
extern const uint32_t convoy_poll_oneshot;

/// An epoll instance and an eventfd, both close-on-exec (the eventfd non-blocking); -1 on failure.
int convoy_epoll_create(void);
int convoy_eventfd_create(void);

/// epoll_ctl with `fd` as the event's data: `add` non-zero adds, zero modifies.
int convoy_epoll_watch(int epoll, int fd, uint32_t events, int add);

/// epoll_wait into parallel arrays (at most 64 events).
int convoy_epoll_wait(int epoll, int *fds, uint32_t *events, int max, int timeout_ms);

#endif
