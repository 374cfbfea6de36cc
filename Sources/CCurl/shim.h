#ifndef CONVOY_CCURL_SHIM_H
#define CONVOY_CCURL_SHIM_H
#include <curl/curl.h>

/* Swift does not import variadic C functions: one typed wrapper per argument kind. */
static inline CURLcode convoy_curl_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode convoy_curl_setopt_off(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode convoy_curl_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode convoy_curl_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode convoy_curl_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value) {
    return curl_easy_setopt(handle, option, value);
}
typedef size_t (*convoy_curl_data_callback)(char *data, size_t size, size_t count, void *userdata);
static inline CURLcode convoy_curl_setopt_data_callback(CURL *handle, CURLoption option, convoy_curl_data_callback value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode convoy_curl_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLcode convoy_curl_getinfo_pointer(CURL *handle, CURLINFO info, void **value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLMcode convoy_curl_multi_setopt_long(CURLM *handle, CURLMoption option, long value) {
    return curl_multi_setopt(handle, option, value);
}
#endif
