/* Compiled alone as C11 and as C++: kiln.h must stand first in a translation unit. */
#include "kiln.h"
