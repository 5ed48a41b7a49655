#include "ctkPixelStatsPlugin_p.h"
#include "ctkPixelStatsLogic_p.h"

#include <ctkPluginContext.h>

ctkPluginContext* ctkPixelStatsPlugin::Context = nullptr;

ctkPixelStatsPlugin::ctkPixelStatsPlugin()
  : Logic(nullptr)
{
}

ctkPixelStatsPlugin::~ctkPixelStatsPlugin()
{
  delete this->Logic;
}

void ctkPixelStatsPlugin::start(ctkPluginContext* context)
{
  ctkPixelStatsPlugin::Context = context;
  delete this->Logic;
  this->Logic = new ctkPixelStatsLogic(context);
  context->registerService<ctkDicomAppInterface>(this->Logic);
  this->Logic->announceReady();
}

void ctkPixelStatsPlugin::stop(ctkPluginContext* context)
{
  Q_UNUSED(context)
  ctkPixelStatsPlugin::Context = nullptr;
}

ctkPluginContext* ctkPixelStatsPlugin::getPluginContext()
{
  return ctkPixelStatsPlugin::Context;
}
