# Install rules and the CMake package OptimMLIR, so that a program outside
# this tree can do, after `cmake --install build --prefix P`:
#
#   find_package(OptimMLIR CONFIG REQUIRED)        # CMAKE_PREFIX_PATH=P
#   target_link_libraries(app PRIVATE OptimMLIR::Compiler OptimMLIR::Runtime)
#
# Laid out as CIRCT and MLIR do theirs: libraries in lib/, headers (with the
# generated .h.inc) in include/, tools in bin/, and lib/cmake/OptimMLIR/ with
# a config that finds MLIR for the compiler's targets. Two export sets: the
# runtime's (the only one of a runtime-only build, which needs no LLVM) and
# the compiler's, which refers to the runtime's.
#
# Included at the end of the top-level CMakeLists.txt (both kinds of build),
# once every target exists.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(OPTIM_INSTALL_PACKAGE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/OptimMLIR)
set(OPTIM_INSTALL_EXAMPLES_DIR ${CMAKE_INSTALL_DATADIR}/optim-mlir/examples)

# Exported targets get the short names users write (OptimMLIR::Runtime) and
# the installed headers as their include folder: in this tree the folders come
# from include_directories(), which an export does not carry.
function(optim_export_library target export_name)
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${export_name})
  target_include_directories(${target} INTERFACE
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
endfunction()

# The runtime: the library and its headers (plain C++17 and C, no LLVM).
optim_export_library(optim_runtime Runtime)
install(TARGETS optim_runtime EXPORT OptimMLIRRuntimeTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/runtime/include/optim
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")
install(EXPORT OptimMLIRRuntimeTargets NAMESPACE OptimMLIR::
  DESTINATION ${OPTIM_INSTALL_PACKAGE_DIR})

if(NOT OPTIM_RUNTIME_ONLY)
  # The compiler's static libraries (add_mlir_library's, installed here with
  # DISABLE_INSTALL there) and the training tasks.
  set(libraries
    MLIROptimDialect Dialect
    MLIROptimTransforms Transforms
    MLIROptimConversion Conversion
    OptimFrontend Frontend
    OptimCompiler Compiler
    OptimTasks Tasks)
  set(targets)
  while(libraries)
    list(POP_FRONT libraries target export_name)
    optim_export_library(${target} ${export_name})
    list(APPEND targets ${target})
  endwhile()
  # liboptim.so, the C API. Its dependency libMLIR.so is not in the loader's
  # default path on Debian (/usr/lib/llvm-22/lib): the installed library and
  # tools keep the folders they were linked from as their RUNPATH.
  optim_export_library(optim CAPI)
  # A fuzzer build's libraries are instrumented (add_link_options in the
  # top-level CMakeLists.txt, which no export carries): their users must
  # link the sanitizers' runtimes too.
  if(OPTIM_ENABLE_FUZZER)
    target_link_options(optim_runtime INTERFACE
      $<INSTALL_INTERFACE:-fsanitize=address,undefined>)
    target_link_options(optim INTERFACE
      $<INSTALL_INTERFACE:-fsanitize=address,undefined>)
  endif()
  set(tools optimc optim-opt optim-eval optim-train optim-sudoku optim-layer)
  set_target_properties(optim ${tools} PROPERTIES
    INSTALL_RPATH_USE_LINK_PATH ON)
  install(TARGETS ${targets} optim ${tools} EXPORT OptimMLIRTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(EXPORT OptimMLIRTargets NAMESPACE OptimMLIR::
    DESTINATION ${OPTIM_INSTALL_PACKAGE_DIR})

  # Headers: the compiler's and the dialect's, with their ODS sources (as
  # MLIR installs its .td), and the .h.inc that tablegen wrote for them.
  foreach(dir ${PROJECT_SOURCE_DIR}/include/optim
              ${PROJECT_SOURCE_DIR}/dialect/include/optim)
    install(DIRECTORY ${dir} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
      FILES_MATCHING PATTERN "*.h" PATTERN "*.td")
  endforeach()
  foreach(dir ${PROJECT_BINARY_DIR}/include/optim
              ${PROJECT_BINARY_DIR}/dialect/include/optim)
    install(DIRECTORY ${dir} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
      FILES_MATCHING PATTERN "*.h.inc" PATTERN "CMakeFiles" EXCLUDE)
  endforeach()

  # The example programs and learned weights, which optim-train and
  # optim-sudoku take by default: an installed tool finds them here
  # (tools/common/ToolSupport.h, examplesDir), not in this source tree.
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/examples/
    DESTINATION ${OPTIM_INSTALL_EXAMPLES_DIR}
    FILES_MATCHING PATTERN "*.optim" PATTERN "*.safetensors"
    PATTERN "host" EXCLUDE)
endif()

# The package's config and version files. The config records which MLIR the
# compiler was built against (MLIR_DIR, a hint; its major.minor, required)
# and whether this was a runtime-only build.
set(OPTIM_CONFIG_MLIR_VERSION "")
set(OPTIM_CONFIG_MLIR_DIR "")
if(NOT OPTIM_RUNTIME_ONLY)
  set(OPTIM_CONFIG_MLIR_VERSION "${LLVM_VERSION_MAJOR}.${LLVM_VERSION_MINOR}")
  set(OPTIM_CONFIG_MLIR_DIR "${MLIR_DIR}")
endif()
configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/OptimMLIRConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/OptimMLIRConfig.cmake
  INSTALL_DESTINATION ${OPTIM_INSTALL_PACKAGE_DIR}
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR OPTIM_INSTALL_EXAMPLES_DIR)
# 0.x: a minor release may change the API.
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/cmake/OptimMLIRConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/cmake/OptimMLIRConfig.cmake
  ${PROJECT_BINARY_DIR}/cmake/OptimMLIRConfigVersion.cmake
  DESTINATION ${OPTIM_INSTALL_PACKAGE_DIR})
