// placeholder: being written (issue 5)
#include <gtest/gtest.h>
