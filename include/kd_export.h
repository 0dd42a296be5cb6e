/* KD_API marks the public symbols; everything else is hidden (-fvisibility=hidden). */
#ifndef KD_EXPORT_H
#define KD_EXPORT_H

#if defined(_WIN32)
#if defined(KD_BUILDING)
#define KD_API __declspec(dllexport)
#else
#define KD_API
#endif
#elif defined(__GNUC__)
#define KD_API __attribute__((visibility("default")))
#else
#define KD_API
#endif

#endif
