#ifndef CONVOY_CLIBSSH2_SHIM_H
#define CONVOY_CLIBSSH2_SHIM_H
#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <libssh2.h>
#include <libssh2_sftp.h>

/* A receive callback that counts the bytes libssh2 takes off the socket.
   Several channels share one socket: when one channel's read pulls in another
   channel's data, the counter tells the Swift side to wake that channel's waiter,
   which would otherwise sleep on a socket that is already drained.
   The session's abstract pointer must point at a uint64_t counter. */
static inline ssize_t convoy_ssh2_counting_recv(libssh2_socket_t socket, void *buffer, size_t length,
                                                int flags, void **abstract) {
    ssize_t n = recv(socket, buffer, length, flags);
    if (n < 0) {
        return -errno;
    }
    if (abstract != NULL && *abstract != NULL) {
        *(uint64_t *)(*abstract) += (uint64_t)n;
    }
    return n;
}

static inline void convoy_ssh2_install_counting_recv(LIBSSH2_SESSION *session) {
    libssh2_session_callback_set(session, LIBSSH2_CALLBACK_RECV, (void *)convoy_ssh2_counting_recv);
}
#endif
