// Open MPI spells its handles as macros over global objects, which Swift cannot
// import. These getters are the only shim we need.
#include <mpi.h>

static inline MPI_Comm zt_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype zt_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype zt_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype zt_uint16(void) { return MPI_UINT16_T; }
static inline MPI_Datatype zt_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype zt_int64(void) { return MPI_INT64_T; }
static inline MPI_Op zt_sum(void) { return MPI_SUM; }
static inline MPI_Op zt_max(void) { return MPI_MAX; }
static inline void *zt_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Request zt_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Status *zt_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Errhandler zt_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int zt_success(void) { return MPI_SUCCESS; }
static inline MPI_Status *zt_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
static inline int zt_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int zt_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline int zt_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
static inline int zt_comm_type_shared(void) { return MPI_COMM_TYPE_SHARED; }
static inline MPI_Info zt_info_null(void) { return MPI_INFO_NULL; }
